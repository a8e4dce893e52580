"""``/token/``: list, revoke, delete, disable and enable certificate tokens."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from services.api import audit
from services.api.activation import TokenSelection, set_active
from services.api.auth import Caller, Context
from services.api.context import ApiContext
from services.api.decisions import revocation
from services.api.envelope import ok
from services.api.errors import Forbidden
from services.api.genkey import listed_pkcs12
from services.api.held_requests import held_by
from services.api.jobs import job_row
from services.api.params import Page, PageSize, body_doc, parse
from services.api.policies import Action, require_action
from services.api.schemas import REALM
from services.api.token_view import stored_states, token_view, with_pkcs12
from services.api.tokens import page_links, require_transition, token_for
from services.api.waiter import await_outcome, retired
from shared.ca_jobs import REVOCATION_REASONS, Retirement
from shared.db.models import Token, User
from shared.domain import EventType, RolloutState
from shared.messaging.outbox import insert_outbox
from shared.messaging.topology import CA_DELETE, CA_REVOKE
from shared.security import Identity
from shared.token_states import Trigger

router = APIRouter(prefix="/token", tags=["token"])
log = logging.getLogger(__name__)


@router.get("/")
async def list_tokens(
    ctx: Context,
    caller: Caller,
    serial: str | None = Query(default=None, max_length=40),
    user: str | None = Query(default=None, max_length=120),
    realm: str | None = Query(default=None, pattern=REALM),
    rollout_state: RolloutState | None = None,
    ca: str | None = Query(default=None, max_length=120),
    certtoken_state: RolloutState | None = None,
    page: Page = 1,
    pagesize: PageSize = 15,
    offer_pkcs12: bool = Query(
        default=True,
        alias="pkcs12",
        description="false: never offer info.pkcs12, so that looking counts no download",
    ),
) -> JSONResponse:
    """Tokens matching the filters, a page at a time; users see only their own.

    One token asked for by serial offers its PKCS#12 (``info.pkcs12``) as a download would
    (not with ``pkcs12=false``). A pending token's ``info.held_by`` says who holds it:
    ``certtoken`` (awaiting a CA manager's approval) or ``ca`` (the CA itself decides).
    ``ca`` and ``certtoken_state`` (the stored state, ``revoked`` apart) are certtoken's own.
    """
    query = select(Token)
    if caller.role == "user":
        if user not in (None, caller.username) or realm not in (None, caller.realm):
            raise Forbidden("user: a user may only list their own tokens")
        if serial:
            await token_for(ctx, caller, serial)
        query = query.where(Token.username == caller.username, Token.realm == caller.realm)
    if serial:
        query = query.where(Token.serial == serial)
    if user:
        query = query.where(Token.username == user)
    if realm:
        query = query.where(Token.realm == realm)
    if rollout_state:
        query = query.where(Token.rollout_state.in_(stored_states(rollout_state)))
    if certtoken_state:
        query = query.where(Token.rollout_state == certtoken_state.value)
    if ca:
        query = query.where(Token.ca == ca)
    owner = (User.realm == Token.realm) & (User.username == Token.username)
    async with ctx.db.read() as session:
        count = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = (
            await session.execute(
                query.add_columns(User.id)
                .outerjoin(User, owner)
                .order_by(Token.created_at, Token.serial)
                .offset((page - 1) * pagesize)
                .limit(pagesize)
            )
        ).all()
        holders = await held_by(session, [token for token, _ in rows])
    admin = caller.role == "admin"
    tokens = [
        token_view(token, user_id, admin=admin, held_by=holders.get(token.serial))
        for token, user_id in rows
    ]
    if serial and len(rows) == 1 and offer_pkcs12:
        pkcs12 = await listed_pkcs12(ctx, caller, rows[0][0])
        if pkcs12 is not None:
            with_pkcs12(tokens[0], pkcs12)
    return ok({"tokens": tokens, **page_links(count, page, pagesize)})


# --- revocation and deletion ----------------------------------------------------------------


class TokenRevoke(BaseModel):
    """``POST /token/revoke``."""

    model_config = ConfigDict(extra="ignore")

    serial: str = Field(min_length=1, max_length=40)
    reason: str = Field(default="unspecified", pattern="^(" + "|".join(REVOCATION_REASONS) + ")$")


@router.post("/revoke", openapi_extra=body_doc(TokenRevoke))
async def revoke_token(request: Request, ctx: Context, caller: Caller) -> JSONResponse:
    """Revoke an enrolled token's certificate at its CA; the token becomes ``revoked``."""
    data = await parse(request, TokenRevoke)
    # The serial is in the body, where the audit row does not look by itself.
    audit.note(request, serial=data.serial)
    token = await token_for(ctx, caller, data.serial)
    audit.note(request, user=token.username, realm=token.realm)
    await require_action(ctx, caller, Action.REVOKE, token.username, token.realm)
    job = revocation(token, data.reason, caller.username)
    return await _retire(ctx, CA_REVOKE, job, EventType.TOKEN_REVOKE)


@router.delete("/{serial}")
async def delete_token(serial: str, ctx: Context, caller: Caller) -> JSONResponse:
    """Delete a token: an enrolled one is revoked first, a pending request is withdrawn."""
    token = await token_for(ctx, caller, serial)
    await require_action(ctx, caller, Action.DELETE, token.username, token.realm)
    require_transition("serial", token.serial, token.rollout_state, Trigger.DELETE)
    job = Retirement(serial, "", caller.username)
    return await _retire(ctx, CA_DELETE, job, EventType.TOKEN_DELETE)


async def _retire(ctx: ApiContext, kind: str, job: Retirement, until: EventType) -> JSONResponse:
    """Hand the job to the ca_worker and wait a bounded time for its event."""
    expected = ctx.waiter.expect(job.serial, retired(until))
    try:
        row = job_row(ctx, kind, job.serial, job.to_data())
        async with ctx.db.write() as session:
            await insert_outbox(session, [row])
        await ctx.relay.send([row])
        outcome = await await_outcome(ctx, expected)
    finally:
        ctx.waiter.discard(expected)
    detail = outcome.detail
    if outcome.ended and until == EventType.TOKEN_DELETE:
        detail["deleted"] = True
    # privacyIDEA's value: how many tokens the call revoked or deleted.
    return ok(1, detail)


# --- disabling and enabling -----------------------------------------------------------------


@router.post("/disable", openapi_extra=body_doc(TokenSelection))
async def disable_token(request: Request, ctx: Context, caller: Caller) -> JSONResponse:
    """Disable a token (by serial, or its owner's only token); value: how many changed."""
    return await _activation(request, ctx, caller, Trigger.DISABLE)


@router.post("/enable", openapi_extra=body_doc(TokenSelection))
async def enable_token(request: Request, ctx: Context, caller: Caller) -> JSONResponse:
    """Enable a disabled token again; a revoked one cannot be; value: how many changed."""
    return await _activation(request, ctx, caller, Trigger.ENABLE)


async def _activation(
    request: Request, ctx: ApiContext, caller: Identity, trigger: Trigger
) -> JSONResponse:
    token, changed = await set_active(ctx, caller, await parse(request, TokenSelection), trigger)
    audit.note(request, serial=token.serial, user=token.username, realm=token.realm)
    return ok(int(changed))
