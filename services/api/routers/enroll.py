"""``POST /token/init``: enroll a certificate token from a CSR, an upload or a generated key."""

from __future__ import annotations

import asyncio
import logging
from enum import StrEnum

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from services.api import audit
from services.api.admission import Admission
from services.api.auth import Caller, Context
from services.api.context import ApiContext
from services.api.enrollment import Upload, check_attestation
from services.api.errors import Forbidden, ParameterError
from services.api.genkey import genkey_init
from services.api.idempotency import (
    DESCRIPTION,
    HEADER,
    Replay,
    claim_for,
    earlier_answer,
    parse_key,
)
from services.api.login import split_login
from services.api.params import body_doc, parse
from services.api.policies import (
    Action,
    EnrollRules,
    check_token_limits,
    choose_ca_template,
    enroll_rules,
    require_action,
    token_limit,
)
from services.api.ratelimit import Limited
from services.api.schemas import TokenInit
from services.api.submission import enrolled_by, init_answer, submit, with_free_serial
from services.api.uploads import check_proof, uploaded_certificate
from services.api.waiter import stored_detail
from shared.db.models import OutboxMessage, User
from shared.domain import RolloutState
from shared.jobs import SignRequest
from shared.logs import correlation_id
from shared.pki import CSRError, name_text, parse_csr
from shared.security import Identity

router = APIRouter(prefix="/token", tags=["token"])
log = logging.getLogger(__name__)


@router.post(
    "/init", openapi_extra=body_doc(TokenInit), dependencies=[Depends(Limited("token_init"))]
)
async def init_token(
    request: Request,
    ctx: Context,
    caller: Caller,
    idempotency_key: str | None = Header(default=None, alias=HEADER, description=DESCRIPTION),
) -> JSONResponse:
    """Enroll a certificate token from a CSR, an uploaded certificate or a generated key."""
    data = await parse(request, TokenInit)
    key = parse_key(idempotency_key)
    mode = enrollment_mode(data)
    username, realm = await _owner(ctx, data, caller)
    audit.note(request, user=username, realm=realm)
    await require_action(ctx, caller, Action.ENROLL, username, realm)
    claim = claim_for(caller, key, data, ctx.settings.resolved_secret_key)
    earlier = await earlier_answer(ctx.db, claim)
    if earlier is not None:
        audit.note(request, serial=earlier["serial"])
        return init_answer(earlier)
    rules = await enroll_rules(ctx, caller, username, realm)
    await check_token_limits(ctx, rules, username, realm)
    admission = Admission(token_limit(rules, (username, realm)), claim)
    if mode == Mode.CERTIFICATE:
        return await _upload(request, data, ctx, caller, (username, realm), rules, admission)
    ca, template = choose_ca_template(rules, data.ca, data.template)
    if mode is None:
        raise ParameterError(
            "request: required (a PEM-encoded PKCS#10 CSR), or give 'certificate' or 'genkey=1'"
        )
    if not ca:
        raise ParameterError("ca: required (the name of a CA connector)")
    if mode == Mode.GENKEY:
        return await genkey_init(
            request, data, ctx, (username, realm), rules, (ca, template or ""), caller, admission
        )
    assert data.request is not None
    try:
        csr = parse_csr(data.request)
    except CSRError as exc:
        raise ParameterError(str(exc)) from None
    checked = (rules.require_attestation, rules.attestation_ca_path, realm, csr, data.attestation)
    if data.attestation:
        # Reading the trust store and checking signatures: off the event loop.
        attested = await asyncio.to_thread(check_attestation, *checked)
    else:
        attested = check_attestation(*checked)
    info = {
        "description": data.description,
        "subject": name_text(csr.subject),
        "enrolled_by": enrolled_by(caller),
        **attested,
    }
    request_pem = data.request.strip()

    def sign_request(serial: str) -> SignRequest:
        return SignRequest(serial, username, realm, ca, template or "", request_pem, info=info)

    detail, _ = await submit(request, ctx, sign_request, csr, admission)
    return init_answer(detail)


class Mode(StrEnum):
    """How a certificate token is enrolled."""

    REQUEST = "request"  # a CSR for the CA to sign
    CERTIFICATE = "certificate"  # an uploaded certificate
    GENKEY = "genkey"  # the server makes the key pair


def enrollment_mode(data: TokenInit) -> Mode | None:
    """The one decision of *data*'s mode; None when it names none; 400 for two at once.

    As privacyIDEA: a CSR wins over ``genkey`` (``privacyideaadm certificate sign`` sends
    both). With a certificate, a CSR is the proof of possession of its key, not a mode.
    """
    if data.certificate:
        if data.genkey:
            raise ParameterError("genkey: give only one of certificate, genkey")
        return Mode.CERTIFICATE
    if data.request:
        return Mode.REQUEST
    return Mode.GENKEY if data.genkey else None


async def _upload(
    request: Request,
    data: TokenInit,
    ctx: ApiContext,
    caller: Identity,
    owner: tuple[str, str],
    rules: EnrollRules,
    admission: Admission,
) -> JSONResponse:
    """An uploaded certificate: the token is enrolled at once, no CA involved."""
    uploaded = uploaded_certificate(data.certificate or "")
    proof = check_proof(uploaded.certificate, data.request, rules.upload_require_proof)
    certificate = uploaded.pem
    username, realm = owner
    info = {
        "description": data.description,
        "enrolled_by": enrolled_by(caller),
        **uploaded.info,
        **proof,
    }
    identity = uploaded.identity

    async def store(serial: str) -> OutboxMessage | Replay:
        sign = SignRequest(serial, username, realm, data.ca or "", "", "", info=info)
        upload = Upload(sign, certificate, correlation_id.get(), identity, admission)
        return await ctx.enrollments.store_upload(upload)

    serial, row = await with_free_serial(store)
    if isinstance(row, Replay):
        audit.note(request, serial=row.serial)
        return init_answer(await stored_detail(ctx.db, row.serial))
    audit.note(request, serial=serial)
    await ctx.relay.send([row])
    log.info("certificate uploaded", extra={"serial": serial})
    detail = {"serial": serial, "rollout_state": RolloutState.ENROLLED.value}
    return init_answer({**detail, "certificate": certificate})


async def _owner(ctx: ApiContext, data: TokenInit, caller: Identity) -> tuple[str, str]:
    """The token owner's login and realm; users may only enroll for themselves."""
    if caller.role == "user":
        if data.user and data.user not in (caller.username, f"{caller.username}@{caller.realm}"):
            raise Forbidden("user: a user may only enroll tokens for themselves")
        if data.realm and data.realm != caller.realm:
            raise Forbidden("realm: a user may only enroll tokens in their own realm")
        return caller.username, caller.realm
    if not data.user:
        raise ParameterError("user: required (the owner of the token)")
    username, realm = split_login(data.user, data.realm) or (data.user, "")
    if realm:
        # Whether the user is in that realm is checked with the batch that stores the token.
        return username, realm
    return username, await _owner_realm(ctx, username)


async def _owner_realm(ctx: ApiContext, username: str) -> str:
    """The realm of *username* given without one: their only realm."""
    async with ctx.db.read() as session:
        realms = set(await session.scalars(select(User.realm).where(User.username == username)))
    if not realms:
        raise ParameterError(f"user: unknown user {username!r}")
    if len(realms) > 1:
        raise ParameterError(f"realm: required, user {username!r} is in several realms")
    return next(iter(realms))
