"""Stores enrollment requests: many concurrent requests share one transaction."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.errors import ParameterError
from shared.batching import Batcher
from shared.db.models import CAConnector, OutboxMessage, Token, User, utcnow
from shared.db.session import Database
from shared.domain import TOKEN_TYPE, RolloutState
from shared.messaging.outbox import insert_outbox


@dataclass(frozen=True)
class EnrollIntent:
    """A validated request to store a token with its signing job."""

    serial: str
    username: str
    realm: str
    ca: str
    template: str
    request: str
    info: dict[str, Any]
    job: OutboxMessage


class SerialTaken(Exception):
    """The random serial is in use already; the caller draws another."""


class EnrollmentStore:
    """Writes tokens and their ``csr.sign`` jobs, a batch per transaction (group commit)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._batcher: Batcher[EnrollIntent, str] = Batcher(self._flush)

    async def store(self, intent: EnrollIntent) -> str:
        """Store *intent*; return the owner's realm. ParameterError for unknown references."""
        return await self._batcher.submit(intent)

    async def _flush(self, intents: list[EnrollIntent]) -> list[str | Exception]:
        # Checks read outside the write lock, which is held only for the inserts; a serial
        # taken meanwhile still fails on the primary key (IntegrityError: drawn again).
        async with self._db.read() as session:
            known_cas, realms, taken = await _lookups(session, intents)
        results: list[str | Exception] = []
        tokens: list[dict[str, Any]] = []
        jobs: list[OutboxMessage] = []
        now = utcnow()
        for intent in intents:
            try:
                realm = _check(intent, known_cas, realms, taken)
            except (ParameterError, SerialTaken) as exc:
                results.append(exc)
                continue
            taken.add(intent.serial)
            results.append(realm)
            tokens.append(_token_values(intent, realm, now))
            jobs.append(intent.job)
        if tokens:
            async with self._db.write() as session:
                await session.execute(insert(Token), tokens)
                await insert_outbox(session, jobs)
        return results


async def _lookups(
    session: AsyncSession, intents: list[EnrollIntent]
) -> tuple[set[str], dict[str, set[str]], set[str]]:
    """Known CA names, the realms of each named user, and serials already in use."""
    cas = set(
        await session.scalars(
            select(CAConnector.name).where(CAConnector.name.in_({i.ca for i in intents}))
        )
    )
    realms: dict[str, set[str]] = defaultdict(set)
    rows = await session.execute(
        select(User.username, User.realm).where(User.username.in_({i.username for i in intents}))
    )
    for username, realm in rows:
        realms[username].add(realm)
    taken = set(
        await session.scalars(
            select(Token.serial).where(Token.serial.in_([i.serial for i in intents]))
        )
    )
    return cas, realms, taken


def _check(
    intent: EnrollIntent, cas: set[str], realms: dict[str, set[str]], taken: set[str]
) -> str:
    """The owner's realm; raise when a reference is unknown or the serial is taken."""
    if intent.ca not in cas:
        raise ParameterError(f"ca: unknown CA connector {intent.ca!r}")
    user_realms = realms.get(intent.username, set())
    if intent.realm:
        if intent.realm not in user_realms:
            raise ParameterError(
                f"user: unknown user {intent.username!r} in realm {intent.realm!r}"
            )
        realm = intent.realm
    elif len(user_realms) == 1:
        realm = next(iter(user_realms))
    elif not user_realms:
        raise ParameterError(f"user: unknown user {intent.username!r}")
    else:
        raise ParameterError(f"realm: required, user {intent.username!r} is in several realms")
    if intent.serial in taken:
        raise SerialTaken(intent.serial)
    return realm


def _token_values(intent: EnrollIntent, realm: str, now: Any) -> dict[str, Any]:
    return {
        "serial": intent.serial,
        "tokentype": TOKEN_TYPE,
        "username": intent.username,
        "realm": realm,
        "rollout_state": RolloutState.SUBMITTED.value,
        "ca": intent.ca,
        "template": intent.template,
        "request": intent.request,
        "certificate": "",
        "info": intent.info,
        "created_at": now,
        "updated_at": now,
    }
