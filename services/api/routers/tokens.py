"""``/token/``: enroll certificate tokens and query them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from services.api import audit
from services.api.auth import Caller, Context
from services.api.context import ApiContext
from services.api.enrollment import (
    EnrollIntent,
    SerialTaken,
    Upload,
    check_attestation,
    uploaded_certificate,
)
from services.api.envelope import ok
from services.api.errors import Conflict, Forbidden, NotFound, ParameterError
from services.api.jobs import answer_detail, event_type, job_row, token_state, wait_for
from services.api.login import split_login
from services.api.params import body_doc, parse
from services.api.schemas import REALM, TokenInit
from services.api.tokens import page_links, token_view
from shared.ca_jobs import Retirement
from shared.db.models import Token
from shared.domain import FINAL_FOR_INIT, EventType, RolloutState, new_serial
from shared.jobs import SignRequest
from shared.logs import correlation_id
from shared.messaging.topology import CA_DELETE, CA_REVOKE
from shared.pki import CSRError, csr_summary, parse_csr
from shared.security import Identity

router = APIRouter(prefix="/token", tags=["token"])
log = logging.getLogger(__name__)

# How often a waiting init re-reads the token, in case its outcome event was missed.
_RECHECK_SECONDS = 1.0
_SERIAL_ATTEMPTS = 5


@router.post("/init", openapi_extra=body_doc(TokenInit))
async def init_token(request: Request, ctx: Context, caller: Caller) -> JSONResponse:
    """Enroll a certificate token from a CSR or an uploaded certificate."""
    data = await parse(request, TokenInit)
    if data.genkey not in (None, "", "0", "false"):
        raise ParameterError("genkey: server-side key generation is not served yet")
    if data.certificate:
        if data.request:
            raise ParameterError("certificate: give either 'request' or 'certificate', not both")
        return await _upload(request, data, ctx, caller)
    if not data.request:
        raise ParameterError("request: required (a PEM-encoded PKCS#10 CSR)")
    if not data.ca:
        raise ParameterError("ca: required (the name of a CA connector)")
    try:
        csr = parse_csr(data.request)
    except CSRError as exc:
        raise ParameterError(str(exc)) from None
    username, realm = _owner(data, caller)
    audit.note(request, user=username, realm=realm)
    if data.attestation:
        # Reading the trust store and checking signatures: off the event loop.
        attested = await asyncio.to_thread(
            check_attestation, ctx.settings, realm, csr, data.attestation
        )
    else:
        attested = check_attestation(ctx.settings, realm, csr, None)
    info = {
        "description": data.description,
        "subject": csr_summary(csr)["subject"],
        "enrolled_by": f"{caller.role}:{caller.username}",
        **attested,
    }

    for _ in range(_SERIAL_ATTEMPTS):
        serial = new_serial()
        future = ctx.waiter.expect(serial)
        sign = SignRequest(
            serial, username, realm, data.ca, data.template or "", data.request.strip(), info=info
        )
        try:
            job = await ctx.enrollments.store(EnrollIntent(sign, correlation_id.get()))
        except (SerialTaken, IntegrityError):
            # Serials have 32 random bits: a collision is rare and must not fail the request.
            ctx.waiter.discard(serial, future)
            continue
        except BaseException:
            ctx.waiter.discard(serial, future)
            raise
        break
    else:
        raise RuntimeError("could not allocate a free token serial")

    audit.note(request, serial=serial)
    try:
        await ctx.relay.send([job])
        log.info("token submitted", extra={"serial": serial, "ca": data.ca})
        outcome = await _await_outcome(ctx, serial, future)
    finally:
        ctx.waiter.discard(serial, future)
    detail: dict[str, Any] = {"serial": serial, "rollout_state": outcome["rollout_state"]}
    for key in ("certificate", "reason", "request_id"):
        if outcome.get(key):
            detail[key] = outcome[key]
    return ok(True, detail)


async def _upload(
    request: Request, data: TokenInit, ctx: ApiContext, caller: Identity
) -> JSONResponse:
    """An uploaded certificate: the token is enrolled at once, no CA involved."""
    certificate, cert_info = uploaded_certificate(data.certificate or "")
    username, realm = _owner(data, caller)
    audit.note(request, user=username, realm=realm)
    info = {
        "description": data.description,
        "enrolled_by": f"{caller.role}:{caller.username}",
        **cert_info,
    }
    for _ in range(_SERIAL_ATTEMPTS):
        serial = new_serial()
        sign = SignRequest(serial, username, realm, data.ca or "", "", "", info=info)
        try:
            row = await ctx.enrollments.store_upload(
                Upload(sign, certificate, correlation_id.get())
            )
        except (SerialTaken, IntegrityError):
            continue
        break
    else:
        raise RuntimeError("could not allocate a free token serial")
    audit.note(request, serial=serial)
    await ctx.relay.send([row])
    log.info("certificate uploaded", extra={"serial": serial})
    detail = {"serial": serial, "rollout_state": RolloutState.ENROLLED.value}
    return ok(True, {**detail, "certificate": certificate})


def _owner(data: TokenInit, caller: Identity) -> tuple[str, str]:
    """The token owner's login and realm; users may only enroll for themselves."""
    if caller.role == "user":
        if data.user and data.user not in (caller.username, f"{caller.username}@{caller.realm}"):
            raise Forbidden("user: a user may only enroll tokens for themselves")
        return caller.username, caller.realm
    if not data.user:
        raise ParameterError("user: required (the owner of the token)")
    return split_login(data.user, data.realm) or (data.user, "")


async def _await_outcome(
    ctx: ApiContext, serial: str, future: asyncio.Future[dict[str, Any]]
) -> dict[str, Any]:
    """The CA's outcome as its event told it, or the token as stored when the wait ends."""
    deadline = time.monotonic() + ctx.settings.init_wait_seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining > 0:
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(
                    asyncio.shield(future), min(remaining, _RECHECK_SECONDS)
                )
        # No event yet: look at the token itself, in case its event was missed.
        async with ctx.db.read() as session:
            token = await session.get(Token, serial)
        assert token is not None
        if token.rollout_state in FINAL_FOR_INIT or time.monotonic() >= deadline:
            return {
                "rollout_state": token.rollout_state,
                "certificate": token.certificate,
                "reason": token.info.get("reason", ""),
                "request_id": token.info.get("request_id", ""),
            }


@router.get("/")
async def list_tokens(
    ctx: Context,
    caller: Caller,
    serial: str | None = Query(default=None, max_length=40),
    user: str | None = Query(default=None, max_length=120),
    realm: str | None = Query(default=None, pattern=REALM),
    rollout_state: RolloutState | None = None,
    page: int = Query(default=1, ge=1),
    pagesize: int = Query(default=15, ge=1, le=1000),
) -> JSONResponse:
    """Tokens matching the filters, a page at a time; users see only their own."""
    query = select(Token)
    if caller.role == "user":
        query = query.where(Token.username == caller.username, Token.realm == caller.realm)
    if serial:
        query = query.where(Token.serial == serial)
    if user:
        query = query.where(Token.username == user)
    if realm:
        query = query.where(Token.realm == realm)
    if rollout_state:
        query = query.where(Token.rollout_state == rollout_state.value)
    async with ctx.db.read() as session:
        count = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = await session.scalars(
            query.order_by(Token.created_at, Token.serial)
            .offset((page - 1) * pagesize)
            .limit(pagesize)
        )
        tokens = [token_view(t) for t in rows]
    return ok({"tokens": tokens, **page_links(count, page, pagesize)})


# --- revocation and deletion ----------------------------------------------------------------

REVOCATION_REASONS = (
    "unspecified",
    "keyCompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
)


class TokenRevoke(BaseModel):
    """``POST /token/revoke``."""

    model_config = ConfigDict(extra="ignore")

    serial: str = Field(min_length=1, max_length=40)
    reason: str = Field(default="unspecified", pattern="^(" + "|".join(REVOCATION_REASONS) + ")$")


@router.post("/revoke", openapi_extra=body_doc(TokenRevoke))
async def revoke_token(request: Request, ctx: Context, caller: Caller) -> JSONResponse:
    """Revoke an enrolled token's certificate at its CA; the token becomes ``revoked``."""
    data = await parse(request, TokenRevoke)
    token = await _own_token(ctx, caller, data.serial)
    if token.rollout_state != RolloutState.ENROLLED:
        raise Conflict(
            f"serial: token {data.serial} is {token.rollout_state}; only an enrolled token "
            "can be revoked"
        )
    job = Retirement(data.serial, data.reason, caller.username)
    return await _retire(ctx, CA_REVOKE, job, EventType.TOKEN_REVOKE)


@router.delete("/{serial}")
async def delete_token(serial: str, ctx: Context, caller: Caller) -> JSONResponse:
    """Delete a token: an enrolled one is revoked first, a pending request is withdrawn."""
    await _own_token(ctx, caller, serial)
    job = Retirement(serial, "", caller.username)
    return await _retire(ctx, CA_DELETE, job, EventType.TOKEN_DELETE)


async def _own_token(ctx: ApiContext, caller: Identity, serial: str) -> Token:
    """The token *serial*; 404 when it does not exist or is not the calling user's."""
    async with ctx.db.read() as session:
        token = await session.get(Token, serial)
    if token is None or (
        caller.role == "user" and (token.username, token.realm) != (caller.username, caller.realm)
    ):
        raise NotFound(f"serial: no token {serial!r}")
    return token


async def _retire(ctx: ApiContext, kind: str, job: Retirement, until: EventType) -> JSONResponse:
    """Hand the job to the ca_worker and wait a bounded time for its event."""
    future = ctx.waiter.expect(job.serial, event_type(until.value))
    try:
        row = job_row(ctx, kind, job.serial, job.to_data())
        async with ctx.db.write() as session:
            session.add(row)
        await ctx.relay.send([row])
        data = await wait_for(ctx, future)
    finally:
        ctx.waiter.discard(job.serial, future)
    if data is None:
        return ok(True, await token_state(ctx, job.serial))
    detail = answer_detail(data)
    if until == EventType.TOKEN_DELETE:
        detail["deleted"] = True
    return ok(True, detail)
