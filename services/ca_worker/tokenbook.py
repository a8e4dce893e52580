"""The ca_worker's writes of outcomes, batched across concurrent jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update

from services.ca_worker.connectors.base import Issued, SignResult
from services.ca_worker.outcomes import outcome
from shared.batching import Batcher
from shared.ca_keyids import authority_key_id
from shared.db.direct import prebuilt
from shared.db.models import (
    CARequest,
    IssuedCertificate,
    OutboxMessage,
    Token,
    TokenKey,
    utcnow,
)
from shared.db.session import Database, Executor
from shared.domain import RolloutState
from shared.events import new_event
from shared.jobs import SignRequest
from shared.messaging.outbox import insert_outbox, outbox_message
from shared.messaging.topology import EVENTS_EXCHANGE, event_routing_key
from shared.pki import certificate_id, load_certificate
from shared.token_events import init_event_data
from shared.token_states import (
    SUBMITTED,
    ImpossibleTransition,
    State,
    Trigger,
    state_of,
    transition,
)

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


@dataclass(frozen=True)
class _Prepared:
    """An outcome turned into rows for the token's state *before*, which it moves *after*."""

    before: State
    after: RolloutState
    serial: str
    update: dict[str, Any]
    issued: dict[str, Any] | None
    ca_request: dict[str, Any] | None
    messages: list[OutboxMessage]
    key: dict[str, Any] | None
    request: str


async def ensure_awaiting_outcome(db: Database, serial: str) -> None:
    """ImpossibleTransition unless the token of *serial* still waits for its CA's outcome."""
    async with db.read() as session:
        state = await session.scalar(select(Token.rollout_state).where(Token.serial == serial))
    transition(state_of(state), Trigger.ISSUE)


class TokenBook:
    """Records outcomes; one transaction for many jobs (group commit)."""

    def __init__(self, db: Database, lease: timedelta) -> None:
        self._db = db
        self._lease = lease
        self._records: Batcher[Outcome, list[OutboxMessage]] = Batcher(self._record_many)

    async def record(self, item: Outcome) -> list[OutboxMessage]:
        """Store the outcome, its event and follow-ups; else ImpossibleTransition."""
        return await self._records.submit(item)

    async def _record_many(self, items: list[Outcome]) -> list[list[OutboxMessage] | Exception]:
        # Prepared for the state the api stores a job's token in, before the write lock; under
        # it, prepared again where the token is in another state.
        ready = [self._prepare_for(item, SUBMITTED) for item in items]
        async with self._db.write_core() as session:
            # The token's state decides whether an outcome moves it on (the first one does), so
            # a redelivered or duplicated job changes nothing. The rows stay locked (SQLite's
            # write lock; FOR UPDATE elsewhere) until commit.
            serials = list({item.job.serial for item in items})
            found = await session.execute(_STATES, {"serials": serials})
            states: dict[str, State] = {serial: state_of(state) for serial, state in found}
            results: list[list[OutboxMessage] | Exception] = []
            winners: list[_Prepared] = []
            for item, prepared in zip(items, ready, strict=True):
                state = states.get(item.job.serial)
                if isinstance(prepared, ImpossibleTransition) or prepared.before != state:
                    prepared = self._prepare_for(item, state)
                if isinstance(prepared, ImpossibleTransition):
                    results.append(prepared)
                    continue
                states[prepared.serial] = prepared.after
                winners.append(prepared)
                results.append(prepared.messages)
            if winners:
                await session.execute(_UPDATE_OUTCOME, [w.update for w in winners])
                issued = [w.issued for w in winners if w.issued is not None]
                if issued:
                    await session.execute(_INSERT_ISSUED, issued)
                held = [w.ca_request for w in winners if w.ca_request is not None]
                if held:
                    await session.execute(insert(CARequest), held)
                for winner in winners:
                    if winner.key is not None:
                        await self._write_key(session, winner)
                await insert_outbox(session, [m for w in winners for m in w.messages])
        return results

    def _prepare_for(self, item: Outcome, state: State) -> _Prepared | ImpossibleTransition:
        """The rows that record *item* for a token in *state*, or why it cannot move on."""
        job, result = item.job, item.result
        try:
            moved = outcome(state, job, result)
        except ImpossibleTransition as refusal:
            return refusal
        assert moved.state is not None
        assert moved.emit is not None
        now = utcnow()
        certificate = result.certificate if isinstance(result, Issued) else ""
        issued, certificate_key = (
            issued_record(job.ca, job.serial, result, now)
            if isinstance(result, Issued)
            else (None, None)
        )
        event = new_event(
            moved.emit,
            SOURCE,
            job.serial,
            init_event_data(job, moved.state, moved.info, certificate),
            item.correlation_id,
        )
        return _Prepared(
            before=state,
            after=moved.state,
            serial=job.serial,
            update={
                "b_serial": job.serial,
                "rollout_state": moved.state.value,
                "info": moved.info,
                "certificate": certificate,
                "certificate_id": certificate_key,
                "updated_at": now,
            },
            issued=issued,
            ca_request=item.ca_request,
            messages=[
                outbox_message(EVENTS_EXCHANGE, event_routing_key(event.type), event, self._lease),
                *item.followups,
            ],
            key=item.key,
            request=job.request,
        )

    @staticmethod
    async def _write_key(session: Executor, winner: _Prepared) -> None:
        """The key commits with the outcome: never an enrolled token without its PKCS#12."""
        assert winner.key is not None
        now = utcnow()
        await session.execute(
            insert(TokenKey), [{**winner.key, "created_at": now, "updated_at": now}]
        )
        # The generated CSR, which the job did not carry.
        await session.execute(
            update(Token).where(Token.serial == winner.serial).values(request=winner.request)
        )


_TOKENS = cast(Table, Token.__table__)


# Statements built once, not per call (see shared.db.session).
_STATES = prebuilt(
    select(Token.serial, Token.rollout_state)
    .where(Token.serial.in_(bindparam("serials", expanding=True)))
    .with_for_update()
)
_INSERT_ISSUED = prebuilt(insert(IssuedCertificate))
_UPDATE_OUTCOME = prebuilt(
    update(_TOKENS)
    .where(_TOKENS.c.serial == bindparam("b_serial"))
    .values(
        {
            name: bindparam(name, type_=_TOKENS.c[name].type)
            for name in ("rollout_state", "info", "certificate", "certificate_id", "updated_at")
        }
    )
)


def issued_record(
    ca: str, token_serial: str, issued: Issued, now: Any
) -> tuple[dict[str, Any], str]:
    """The issued_certificate row of *issued*, and the token's certificate_id: one read of it."""
    certificate = load_certificate(issued.certificate)
    row = {
        "ca": ca,
        "serial_number": issued.serial_number,
        "token_serial": token_serial,
        "subject": issued.subject,
        "not_before": issued.not_before,
        "not_after": issued.not_after,
        "certificate": issued.certificate,
        "created_at": now,
        "issuer_key_id": authority_key_id(certificate),
    }
    return row, certificate_id(certificate)
