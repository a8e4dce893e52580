"""Submitting a token with its signing job, and the bounded wait for the CA's outcome."""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from cryptography import x509
from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from services.api import audit
from services.api.admission import Admission
from services.api.context import ApiContext
from services.api.enrollment import EnrollIntent, SerialTaken
from services.api.envelope import ok
from services.api.idempotency import Replay
from services.api.waiter import Expected, await_outcome, stored_detail
from shared import identity
from shared.db.models import OutboxMessage, Token
from shared.domain import RolloutState, new_serial
from shared.jobs import SignRequest
from shared.logs import correlation_id
from shared.security import Identity
from shared.token_events import CA_DETAIL

log = logging.getLogger(__name__)
T = TypeVar("T")

_SERIAL_ATTEMPTS = 5


def init_answer(detail: dict[str, Any]) -> JSONResponse:
    """The answer of ``POST /token/init``; privacyIDEA's detail names the serving thread."""
    return ok(True, {**detail, "threadid": threading.get_ident()})


def enrolled_by(caller: Identity) -> str:
    """Who enrolled a token, as its info records it: ``role:name``."""
    return identity.enrolled_by(caller.role, caller.username)


async def with_free_serial(store: Callable[[str], Awaitable[T]]) -> tuple[str, T]:
    """Run *store* with a fresh serial; draw again while the serial is taken."""
    for _ in range(_SERIAL_ATTEMPTS):
        serial = new_serial()
        try:
            return serial, await store(serial)
        except (SerialTaken, IntegrityError):
            # Serials have 32 random bits: a collision is rare and must not fail the request.
            continue
    raise RuntimeError("could not allocate a free token serial")


async def submit(
    request: Request,
    ctx: ApiContext,
    make: Callable[[str], SignRequest],
    csr: x509.CertificateSigningRequest | None = None,
    admission: Admission | None = None,
) -> tuple[dict[str, Any], bool]:
    """Store the token made by *make* (given a fresh serial), send its job, await the outcome.

    Returns the answer's detail and whether this request made the token: with an
    Idempotency-Key used before, the detail is the earlier token's as it is now.
    """

    async def store(serial: str) -> tuple[Expected, OutboxMessage | Replay]:
        # Expected before the job exists: its outcome event cannot come too early.
        expected = ctx.waiter.expect(serial)
        try:
            intent = EnrollIntent(make(serial), correlation_id.get(), csr, admission or Admission())
            return expected, await ctx.enrollments.store(intent)
        except BaseException:
            ctx.waiter.discard(expected)
            raise

    serial, (expected, job) = await with_free_serial(store)
    if isinstance(job, Replay):
        ctx.waiter.discard(expected)
        audit.note(request, serial=job.serial)
        return await stored_detail(ctx.db, job.serial), False
    audit.note(request, serial=serial)
    try:
        await ctx.relay.send([job])
        log.info("token submitted", extra={"serial": serial})
        detail = (await await_outcome(ctx, expected)).detail
    finally:
        ctx.waiter.discard(expected)
    if detail["rollout_state"] == RolloutState.FAILED:
        await _ca_detail(request, ctx, detail)
    return detail, True


async def _ca_detail(request: Request, ctx: ApiContext, detail: dict[str, Any]) -> None:
    """A refusal's words from the remote CA: into the audit log and an administrator's answer."""
    async with ctx.db.read() as session:
        info = await session.scalar(select(Token.info).where(Token.serial == detail["serial"]))
    text = str((info or {}).get(CA_DETAIL, ""))
    if not text:
        return
    audit.note(request, info=f"CA: {text}")
    if getattr(getattr(request.state, "identity", None), "role", "") == "admin":
        detail[CA_DETAIL] = text
