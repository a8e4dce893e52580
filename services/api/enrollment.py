"""Stores enrollment requests: many concurrent requests share one transaction."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.errors import ParameterError
from shared.batching import Batcher
from shared.ca_templates import DEFAULT_TEMPLATE
from shared.db.models import CAConnector, CATemplate, OutboxMessage, Token, User, utcnow
from shared.db.session import Database
from shared.domain import JOB_CSR_SIGN, RolloutState
from shared.events import new_event
from shared.jobs import SignRequest
from shared.messaging.outbox import insert_outbox, outbox_message
from shared.messaging.topology import CSR_SIGN, JOBS_EXCHANGE

SOURCE = "certtoken/api"


@dataclass(frozen=True)
class EnrollIntent:
    """A validated request to store a token with its signing job."""

    request: SignRequest
    correlation_id: str


class SerialTaken(Exception):
    """The random serial is in use already; the caller draws another."""


class EnrollmentStore:
    """Writes tokens and their ``csr.sign`` jobs, a batch per transaction (group commit)."""

    def __init__(self, db: Database, lease: timedelta) -> None:
        self._db = db
        self._lease = lease
        self._batcher: Batcher[EnrollIntent, OutboxMessage] = Batcher(self._flush)

    async def store(self, intent: EnrollIntent) -> OutboxMessage:
        """Store *intent*; return its job for the caller to publish. 400 for bad references."""
        return await self._batcher.submit(intent)

    async def _flush(self, intents: list[EnrollIntent]) -> list[OutboxMessage | Exception]:
        # Checks read outside the write lock, which is held only for the inserts; a serial
        # taken meanwhile still fails on the primary key (IntegrityError: drawn again).
        async with self._db.read() as session:
            known, realms, taken = await _lookups(session, [i.request for i in intents])
        results: list[OutboxMessage | Exception] = []
        tokens: list[dict[str, Any]] = []
        jobs: list[OutboxMessage] = []
        now = utcnow()
        for intent in intents:
            try:
                realm = _check(intent.request, known, realms, taken)
            except (ParameterError, SerialTaken) as exc:
                results.append(exc)
                continue
            request = dataclasses.replace(intent.request, realm=realm)
            taken.add(request.serial)
            event = new_event(
                JOB_CSR_SIGN, SOURCE, request.serial, request.to_data(), intent.correlation_id
            )
            job = outbox_message(JOBS_EXCHANGE, CSR_SIGN, event, self._lease)
            results.append(job)
            tokens.append(_token_values(request, now))
            jobs.append(job)
        if tokens:
            async with self._db.write() as session:
                await session.execute(insert(Token), tokens)
                await insert_outbox(session, jobs)
        return results


async def _lookups(
    session: AsyncSession, requests: list[SignRequest]
) -> tuple[set[tuple[str, str]], dict[str, set[str]], set[str]]:
    """Known (CA, template) pairs (template "" for the CA), users' realms, serials in use."""
    cas = {r.ca for r in requests}
    known: set[tuple[str, str]] = {
        (name, "")
        for name in await session.scalars(select(CAConnector.name).where(CAConnector.name.in_(cas)))
    }
    named = {r.template for r in requests if r.template and r.template != DEFAULT_TEMPLATE}
    if named:
        rows = await session.execute(
            select(CATemplate.ca, CATemplate.name).where(
                CATemplate.ca.in_(cas), CATemplate.name.in_(named)
            )
        )
        known.update((ca, name) for ca, name in rows)
    realms: dict[str, set[str]] = defaultdict(set)
    rows = await session.execute(
        select(User.username, User.realm).where(User.username.in_({r.username for r in requests}))
    )
    for username, realm in rows:
        realms[username].add(realm)
    taken = set(
        await session.scalars(
            select(Token.serial).where(Token.serial.in_([r.serial for r in requests]))
        )
    )
    return known, realms, taken


def _check(
    request: SignRequest, known: set[tuple[str, str]], realms: dict[str, set[str]], taken: set[str]
) -> str:
    """The owner's realm; raise when a reference is unknown or the serial is taken."""
    if (request.ca, "") not in known:
        raise ParameterError(f"ca: unknown CA connector {request.ca!r}")
    template = request.template
    if template and template != DEFAULT_TEMPLATE and (request.ca, template) not in known:
        raise ParameterError(f"template: CA connector {request.ca!r} has no template {template!r}")
    user_realms = realms.get(request.username, set())
    if request.realm:
        if request.realm not in user_realms:
            raise ParameterError(
                f"user: unknown user {request.username!r} in realm {request.realm!r}"
            )
        realm = request.realm
    elif len(user_realms) == 1:
        realm = next(iter(user_realms))
    elif not user_realms:
        raise ParameterError(f"user: unknown user {request.username!r}")
    else:
        raise ParameterError(f"realm: required, user {request.username!r} is in several realms")
    if request.serial in taken:
        raise SerialTaken(request.serial)
    return realm


def _token_values(request: SignRequest, now: Any) -> dict[str, Any]:
    return {
        "serial": request.serial,
        "tokentype": request.tokentype,
        "username": request.username,
        "realm": request.realm,
        "rollout_state": RolloutState.SUBMITTED.value,
        "ca": request.ca,
        "template": request.template,
        "request": request.request,
        "certificate": "",
        "info": request.info,
        "created_at": now,
        "updated_at": now,
    }
