"""The ca_worker's writes of outcomes, batched across concurrent jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.ca_worker.connectors.base import Issued, SignResult
from services.ca_worker.outcomes import outcome
from shared.batching import Batcher
from shared.db.models import (
    CARequest,
    IssuedCertificate,
    OutboxMessage,
    Token,
    TokenKey,
    utcnow,
)
from shared.db.session import Database
from shared.domain import EventType, RolloutState
from shared.events import new_event
from shared.jobs import SignRequest
from shared.messaging.outbox import insert_outbox, outbox_message
from shared.messaging.topology import EVENTS_EXCHANGE, event_routing_key
from shared.pki import pem_certificate_id
from shared.token_events import init_event_data

SOURCE = "certtoken/ca_worker"


@dataclass(frozen=True)
class Outcome:
    """A connector's answer for a job, to be recorded."""

    job: SignRequest
    result: SignResult
    correlation_id: str
    # A pending result's row in the CA request store, and messages that follow it (a poll).
    ca_request: dict[str, Any] | None = None
    followups: tuple[OutboxMessage, ...] = field(default=())
    # A genkey token's key to write with it: its PKCS#12, its pending key, or secrets dropped.
    key: dict[str, Any] | None = None


class LostRace(Exception):
    """The token is no longer ``submitted``: another delivery recorded its outcome first."""


@dataclass(frozen=True)
class _Prepared:
    """An outcome turned into rows, before the write lock is taken."""

    serial: str
    update: dict[str, Any]
    issued: dict[str, Any] | None
    ca_request: dict[str, Any] | None
    messages: list[OutboxMessage]
    key: dict[str, Any] | None
    request: str


class TokenBook:
    """Records outcomes; one transaction for many jobs (group commit)."""

    def __init__(self, db: Database, lease: timedelta) -> None:
        self._db = db
        self._lease = lease
        self._records: Batcher[Outcome, list[OutboxMessage]] = Batcher(self._record_many)

    async def record(self, item: Outcome) -> list[OutboxMessage]:
        """Store the outcome, its event and follow-ups if still ``submitted``; else LostRace."""
        return await self._records.submit(item)

    async def _record_many(self, items: list[Outcome]) -> list[list[OutboxMessage] | Exception]:
        prepared = [self._prepare(item) for item in items]
        async with self._db.write() as session:
            # First writer wins: only tokens still ``submitted`` take an outcome, so a
            # redelivered or duplicated job changes nothing. The rows stay locked (SQLite's
            # write lock; FOR UPDATE elsewhere) until commit.
            open_serials = set(
                await session.scalars(
                    select(Token.serial)
                    .where(
                        Token.serial.in_([p.serial for p in prepared]),
                        Token.rollout_state == RolloutState.SUBMITTED,
                    )
                    .with_for_update()
                )
            )
            results: list[list[OutboxMessage] | Exception] = []
            winners: list[_Prepared] = []
            for item in prepared:
                if item.serial in open_serials:
                    open_serials.discard(item.serial)
                    winners.append(item)
                    results.append(item.messages)
                else:
                    results.append(LostRace(item.serial))
            if winners:
                await session.execute(_UPDATE_OUTCOME, [w.update for w in winners])
                issued = [w.issued for w in winners if w.issued is not None]
                if issued:
                    await session.execute(insert(IssuedCertificate), issued)
                held = [w.ca_request for w in winners if w.ca_request is not None]
                if held:
                    await session.execute(insert(CARequest), held)
                for winner in winners:
                    if winner.key is not None:
                        await self._write_key(session, winner)
                await insert_outbox(session, [m for w in winners for m in w.messages])
        return results

    def _prepare(self, item: Outcome) -> _Prepared:
        job, result = item.job, item.result
        now = utcnow()
        state, info = outcome(job, result)
        certificate = result.certificate if isinstance(result, Issued) else ""
        event = new_event(
            EventType.TOKEN_INIT,
            SOURCE,
            job.serial,
            init_event_data(job, state, info, certificate),
            item.correlation_id,
        )
        return _Prepared(
            serial=job.serial,
            update={
                "b_serial": job.serial,
                "rollout_state": state.value,
                "info": info,
                "certificate": certificate,
                "certificate_id": pem_certificate_id(certificate),
                "updated_at": now,
            },
            issued=_issued_values(job, result, now) if isinstance(result, Issued) else None,
            ca_request=item.ca_request,
            messages=[
                outbox_message(EVENTS_EXCHANGE, event_routing_key(event.type), event, self._lease),
                *item.followups,
            ],
            key=item.key,
            request=job.request,
        )

    @staticmethod
    async def _write_key(session: AsyncSession, winner: _Prepared) -> None:
        """The key commits with the outcome: never an enrolled token without its PKCS#12."""
        assert winner.key is not None
        now = utcnow()
        session.add(TokenKey(**winner.key, created_at=now, updated_at=now))
        # The generated CSR, which the job did not carry.
        await session.execute(
            update(Token).where(Token.serial == winner.serial).values(request=winner.request)
        )


_TOKENS = cast(Table, Token.__table__)
_UPDATE_OUTCOME = (
    update(_TOKENS)
    .where(_TOKENS.c.serial == bindparam("b_serial"))
    .values(
        {
            name: bindparam(name, type_=_TOKENS.c[name].type)
            for name in ("rollout_state", "info", "certificate", "certificate_id", "updated_at")
        }
    )
)


def _issued_values(job: SignRequest, result: Issued, now: Any) -> dict[str, Any]:
    return {
        "ca": job.ca,
        "serial_number": result.serial_number,
        "token_serial": job.serial,
        "subject": result.subject,
        "not_before": result.not_before,
        "not_after": result.not_after,
        "certificate": result.certificate,
        "created_at": now,
    }
