"""The notifier's delivery records: claims before sending, outcomes after, group-committed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.claims import Decision, Existing, decide
from shared.batching import Batcher
from shared.db.models import MailDelivery, utcnow
from shared.db.session import Database
from shared.notification.planning import Mail
from shared.notification.vocabulary import DeliveryStatus

_MAX_ERROR = 2000
# When a claim could not be judged (a concurrent insert): look again this soon.
_RECHECK = timedelta(milliseconds=50)

Key = tuple[str, int, str]


@dataclass(frozen=True)
class ClaimRequest:
    """A consumer's wish to send *mail* for an event, holding it until *lease_until*."""

    event_id: str
    event_type: str
    serial: str
    mail: Mail
    claim: str
    lease_until: datetime
    admin_retry: bool = False

    @property
    def key(self) -> Key:
        """What makes the delivery unique."""
        return (self.event_id, self.mail.handler_id, self.mail.recipient)


@dataclass(frozen=True)
class Claimed:
    """The delivery is this consumer's to send, until the lease ends."""

    delivery_id: int


@dataclass(frozen=True)
class Done:
    """The delivery was sent, or is parked: nothing to do."""

    status: str


@dataclass(frozen=True)
class Busy:
    """Another consumer holds the delivery until *until*."""

    until: datetime


ClaimResult = Claimed | Done | Busy


@dataclass(frozen=True)
class Outcome:
    """How a claimed delivery ended."""

    delivery_id: int
    claim: str
    status: DeliveryStatus
    error: str = ""
    permanent: bool = False


class DeliveryBook:
    """Claims and outcomes of deliveries; concurrent callers share transactions."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._claims: Batcher[ClaimRequest, ClaimResult] = Batcher(self._claim_many)
        self._outcomes: Batcher[Outcome, None] = Batcher(self._record_many)

    async def claim(self, request: ClaimRequest) -> ClaimResult:
        """Claim the delivery (committed when this returns), or say why not."""
        return await self._claims.submit(request)

    async def record(self, outcome: Outcome) -> None:
        """Store the outcome of a claimed delivery (committed when this returns)."""
        await self._outcomes.submit(outcome)

    async def _claim_many(self, requests: list[ClaimRequest]) -> list[ClaimResult | Exception]:
        now = utcnow()
        results: list[ClaimResult | Exception] = []
        async with self._db.write() as session:
            existing = await self._existing(session, [r.key for r in requests])
            taken: set[Key] = set()
            for request in requests:
                if request.key in taken:
                    # The same delivery twice in one batch: the first claim wins.
                    results.append(Busy(now + _RECHECK))
                    continue
                results.append(await self._claim_one(session, request, existing, now))
                if isinstance(results[-1], Claimed):
                    taken.add(request.key)
        return results

    async def _claim_one(
        self,
        session: AsyncSession,
        request: ClaimRequest,
        existing: dict[Key, tuple[Existing, int]],
        now: datetime,
    ) -> ClaimResult:
        found = existing.get(request.key)
        if found is None:
            inserted = await session.scalar(self._insert(request, now))
            # None: another process inserted it since we looked (PostgreSQL only).
            return Claimed(inserted) if inserted is not None else Busy(now + _RECHECK)
        decision = decide(found[0], now, admin_retry=request.admin_retry)
        if decision is Decision.DONE:
            return Done(found[0].status)
        if decision is Decision.BUSY:
            return Busy(found[0].claimed_until or now + _RECHECK)
        row, attempts = found
        await session.execute(
            update(MailDelivery)
            .where(MailDelivery.id == row.id)
            .values(
                status=DeliveryStatus.SENDING.value,
                claim=request.claim,
                claimed_until=request.lease_until,
                attempts=attempts + 1,
                message=request.mail.message or MailDelivery.message,
                updated_at=now,
            )
        )
        return Claimed(row.id)

    async def _existing(
        self, session: AsyncSession, keys: list[Key]
    ) -> dict[Key, tuple[Existing, int]]:
        query = (
            select(
                MailDelivery.id,
                MailDelivery.event_id,
                MailDelivery.handler_id,
                MailDelivery.recipient,
                MailDelivery.status,
                MailDelivery.claimed_until,
                MailDelivery.attempts,
            )
            .where(
                tuple_(MailDelivery.event_id, MailDelivery.handler_id, MailDelivery.recipient).in_(
                    list(set(keys))
                )
            )
            .with_for_update()
        )
        found: dict[Key, tuple[Existing, int]] = {}
        for row in await session.execute(query):
            key = (row.event_id, row.handler_id, row.recipient)
            found[key] = (Existing(row.id, row.status, row.claimed_until), row.attempts)
        return found

    def _insert(self, request: ClaimRequest, now: datetime) -> Any:
        mail = request.mail
        values = {
            "event_id": request.event_id,
            "event_type": request.event_type,
            "serial": request.serial,
            "handler_id": mail.handler_id,
            "handler_name": mail.handler_name,
            "recipient": mail.recipient,
            "address": mail.address,
            "smtpserver": mail.smtpserver,
            "subject": mail.subject,
            "message": mail.message,
            "status": DeliveryStatus.SENDING.value,
            "permanent": False,
            "attempts": 1,
            "error": "",
            "claim": request.claim,
            "claimed_until": request.lease_until,
            "created_at": now,
            "updated_at": now,
        }
        return (
            self._db.upsert(MailDelivery)
            .values(values)
            .on_conflict_do_nothing()
            .returning(MailDelivery.id)
        )

    async def _record_many(self, outcomes: list[Outcome]) -> list[Exception | None]:
        now = utcnow()
        params = [
            {
                "b_id": o.delivery_id,
                "b_claim": o.claim,
                "status": o.status.value,
                "error": o.error[:_MAX_ERROR],
                "permanent": o.permanent,
                "claimed_until": None,
                "updated_at": now,
                "sent_at": now if o.status is DeliveryStatus.SENT else None,
            }
            for o in outcomes
        ]
        async with self._db.write() as session:
            # Only the holder of the claim records: a consumer whose lease ran out (and was
            # taken over) must not overwrite the newer outcome.
            await session.execute(_RECORD_OUTCOME, params)
        return [None] * len(outcomes)


_TABLE = cast(Table, MailDelivery.__table__)
_RECORD_OUTCOME = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("b_id"), _TABLE.c.claim == bindparam("b_claim"))
    .values(
        {
            name: bindparam(name, type_=_TABLE.c[name].type)
            for name in ("status", "error", "permanent", "claimed_until", "updated_at", "sent_at")
        }
    )
)
