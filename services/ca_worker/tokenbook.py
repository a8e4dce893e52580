"""The ca_worker's reads and writes of tokens, batched across concurrent jobs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update

from services.ca_worker.connectors.base import Issued, SignResult
from services.ca_worker.outcomes import event_data, outcome
from shared.batching import Batcher
from shared.db.models import CAConnector, IssuedCertificate, OutboxMessage, Token, utcnow
from shared.db.session import Database
from shared.domain import EventType, RolloutState
from shared.events import new_event
from shared.messaging.outbox import insert_outbox, outbox_message
from shared.messaging.topology import EVENTS_EXCHANGE, event_routing_key

SOURCE = "certtoken/ca_worker"


@dataclass(frozen=True)
class SignJob:
    """A token to sign and its CA connector's row (None when it is not configured)."""

    token: Token
    connector: CAConnector | None


@dataclass(frozen=True)
class Outcome:
    """A connector's answer for a token, to be recorded."""

    token: Token
    result: SignResult
    correlation_id: str


class LostRace(Exception):
    """Another worker recorded this token's outcome first."""


class TokenBook:
    """Loads jobs and records outcomes; each runs one transaction for many jobs."""

    def __init__(self, db: Database, lease: timedelta) -> None:
        self._db = db
        self._lease = lease
        self._loads: Batcher[str, SignJob | None] = Batcher(self._load_many)
        self._records: Batcher[Outcome, OutboxMessage] = Batcher(self._record_many)

    async def load(self, serial: str) -> SignJob | None:
        """The token called *serial* with its connector, or None when it does not exist."""
        return await self._loads.submit(serial)

    async def record(self, item: Outcome) -> OutboxMessage:
        """Store the outcome with its event if the token is still ``submitted``; else LostRace."""
        return await self._records.submit(item)

    async def _load_many(self, serials: list[str]) -> list[SignJob | None]:
        async with self._db.read() as session:
            tokens = {
                t.serial: t
                for t in await session.scalars(select(Token).where(Token.serial.in_(serials)))
            }
            names = {t.ca for t in tokens.values()}
            connectors = {
                c.name: c
                for c in await session.scalars(
                    select(CAConnector).where(CAConnector.name.in_(names))
                )
            }
        return [
            SignJob(tokens[s], connectors.get(tokens[s].ca)) if s in tokens else None
            for s in serials
        ]

    async def _record_many(self, items: list[Outcome]) -> list[OutboxMessage | Exception]:
        results: list[OutboxMessage | Exception] = []
        updates: list[dict[str, Any]] = []
        issued: list[dict[str, Any]] = []
        events: list[OutboxMessage] = []
        now = utcnow()
        async with self._db.write() as session:
            # First writer wins: only tokens still ``submitted`` take an outcome, so a
            # redelivered or duplicated job changes nothing. The rows are locked (SQLite's
            # write lock; FOR UPDATE elsewhere) until commit.
            serials = [item.token.serial for item in items]
            open_serials = set(
                await session.scalars(
                    select(Token.serial)
                    .where(Token.serial.in_(serials), Token.rollout_state == RolloutState.SUBMITTED)
                    .with_for_update()
                )
            )
            for item in items:
                token, result = item.token, item.result
                if token.serial not in open_serials:
                    results.append(LostRace(token.serial))
                    continue
                open_serials.discard(token.serial)
                state, info = outcome(token, result)
                certificate = result.certificate if isinstance(result, Issued) else ""
                updates.append(
                    {
                        "b_serial": token.serial,
                        "rollout_state": state.value,
                        "info": info,
                        "certificate": certificate,
                        "updated_at": now,
                    }
                )
                if isinstance(result, Issued):
                    issued.append(_issued_values(token, result, now))
                event = new_event(
                    EventType.TOKEN_INIT,
                    SOURCE,
                    token.serial,
                    event_data(token, state, info, certificate),
                    item.correlation_id,
                )
                key = event_routing_key(event.type)
                row = outbox_message(EVENTS_EXCHANGE, key, event, self._lease)
                events.append(row)
                results.append(row)
            if updates:
                await session.execute(_UPDATE_OUTCOME, updates)
            if issued:
                await session.execute(insert(IssuedCertificate), issued)
            await insert_outbox(session, events)
        return results


_TOKENS = cast(Table, Token.__table__)
_UPDATE_OUTCOME = (
    update(_TOKENS)
    .where(_TOKENS.c.serial == bindparam("b_serial"))
    .values(
        {
            name: bindparam(name, type_=_TOKENS.c[name].type)
            for name in ("rollout_state", "info", "certificate", "updated_at")
        }
    )
)


def _issued_values(token: Token, result: Issued, now: Any) -> dict[str, Any]:
    return {
        "ca": token.ca,
        "serial_number": result.serial_number,
        "token_serial": token.serial,
        "subject": result.subject,
        "not_before": result.not_before,
        "not_after": result.not_after,
        "certificate": result.certificate,
        "created_at": now,
    }
