"""Transactional outbox: rows written with the business change, then published.

The writer publishes its own rows right after commit (``OutboxRelay.send``); rows are
written already claimed for a lease, so no other relay takes them meanwhile. The relay's
sweep publishes whatever a crash or a broker outage left behind once the lease has run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, insert, or_, select, update

from shared.db.direct import prebuilt
from shared.db.models import OutboxMessage, utcnow
from shared.db.session import Database, Executor
from shared.events import CloudEvent, encode
from shared.messaging.base import Broker, Message

log = logging.getLogger(__name__)

DEFAULT_LEASE = timedelta(seconds=30)
_SETTLE_DELAY = 0.25
# A publish that takes longer is left to the sweep, so no caller hangs on a sick broker.
_SEND_TIMEOUT = 5.0

# Statements built once, not per call (see shared.db.session).
_INSERT = prebuilt(insert(OutboxMessage))
_BY_IDS = OutboxMessage.message_id.in_(bindparam("ids", expanding=True))
_DELETE = prebuilt(delete(OutboxMessage).where(_BY_IDS))
_RELEASE = prebuilt(update(OutboxMessage).where(_BY_IDS).values(claimed_until=None))
# A row a relay may claim at *now*: unclaimed, or its claim's lease run out.
_DUE = or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < bindparam("now"))
# The relay's look before it claims, every poll of every process: whether a row is due.
_ANY_DUE = prebuilt(select(OutboxMessage.id).where(_DUE).limit(1))


def outbox_message(
    exchange: str, routing_key: str, event: CloudEvent, lease: timedelta = DEFAULT_LEASE
) -> OutboxMessage:
    """An outbox row for *event*, claimed by its writer for *lease* (not yet in a session)."""
    return OutboxMessage(
        message_id=event.id,
        exchange=exchange,
        routing_key=routing_key,
        message_type=event.type,
        body=encode(event),
        correlation_id=event.correlation_id,
        created_at=utcnow(),
        claimed_until=utcnow() + lease,
    )


async def insert_outbox(session: Executor, rows: Sequence[OutboxMessage]) -> None:
    """Insert many outbox rows in one statement (the batch path; no ORM bookkeeping)."""
    if rows:
        await session.execute(_INSERT, [_values(row) for row in rows])


def _values(row: OutboxMessage) -> dict[str, object]:
    return {
        "message_id": row.message_id,
        "exchange": row.exchange,
        "routing_key": row.routing_key,
        "message_type": row.message_type,
        "body": row.body,
        "correlation_id": row.correlation_id,
        "created_at": row.created_at,
        "claimed_until": row.claimed_until,
    }


class OutboxRelay:
    """Publishes outbox rows with confirms and deletes them; several relays may run."""

    def __init__(
        self,
        db: Database,
        broker: Broker,
        *,
        batch: int = 200,
        poll_seconds: float = 1.0,
        lease_seconds: float = 30.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._clock = clock
        self._broker = broker
        self._batch = batch
        self._poll = poll_seconds
        self.lease = timedelta(seconds=lease_seconds)
        self._published: list[str] = []
        self._released: list[str] = []
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.published = 0

    def start(self) -> None:
        """Run the sweep and the bookkeeping in the background."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._sweep_loop(), name="outbox-sweep"),
                asyncio.create_task(self._bookkeeping_loop(), name="outbox-bookkeeping"),
            ]

    async def stop(self) -> None:
        """Stop the loops, publish what is left to claim (briefly), record what was published."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        try:
            # One last round for rows whose send failed, bounded: a sick broker or database
            # must not hold the stop; what is left waits for another relay's sweep.
            async with asyncio.timeout(_SEND_TIMEOUT):
                await self.flush()
        except Exception as exc:
            log.warning(
                "outbox flush at stop failed; left to the sweep", extra={"error": repr(exc)}
            )
        try:
            await self._settle()
        except Exception:
            log.warning("outbox bookkeeping at stop failed; rows will be published again")

    async def send(self, rows: Sequence[OutboxMessage]) -> None:
        """Publish rows this process just committed; failures are left to the sweep."""
        # One row (a request's own job) is awaited here: a task per publish costs more than it.
        if len(rows) == 1:
            results = [await self._attempt(rows[0])]
        else:
            results = await asyncio.gather(*(self._attempt(r) for r in rows))
        for row, result in zip(rows, results, strict=True):
            if result is not None:
                log.warning(
                    "outbox publish failed; the sweep retries it",
                    extra={"message_id": row.message_id, "error": repr(result)},
                )
                self._released.append(row.message_id)
            else:
                self._published.append(row.message_id)
        self._dirty.set()

    async def flush(self) -> int:
        """Claim unclaimed or expired rows, publish them and settle; return how many."""
        rows = await self.claim()
        if rows:
            await self.send(rows)
            await self._settle()
        return len(rows)

    async def _sweep_loop(self) -> None:
        while True:
            try:
                while await self.flush() >= self._batch:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox sweep failed; will retry", extra={"error": str(exc)})
            await asyncio.sleep(self._poll)

    async def _bookkeeping_loop(self) -> None:
        while True:
            await self._dirty.wait()
            # Deleting published rows can wait (their claim keeps other relays off them):
            # one transaction a while instead of one per publish keeps the write lock free.
            await asyncio.sleep(_SETTLE_DELAY)
            self._dirty.clear()
            try:
                await self._settle()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox bookkeeping failed; will retry", extra={"error": str(exc)})
                await asyncio.sleep(self._poll)
                self._dirty.set()

    async def _settle(self) -> None:
        """Delete published rows and release failed claims, in one transaction."""
        published, self._published = self._published, []
        released, self._released = self._released, []
        if not published and not released:
            return
        try:
            async with self._db.write_core() as session:
                if published:
                    await session.execute(_DELETE, {"ids": published})
                if released:
                    await session.execute(_RELEASE, {"ids": released})
        except BaseException:
            self._published.extend(published)
            self._released.extend(released)
            raise
        self.published += len(published)

    async def claim(self) -> list[OutboxMessage]:
        """Take up to a batch of unclaimed or expired rows for this relay's lease."""
        now = self._clock()
        # A cheap read first, so an idle relay never takes SQLite's write lock.
        async with self._db.read_core() as connection:
            if await connection.scalar(_ANY_DUE, {"now": now}) is None:
                return []
        async with self._db.write() as session:
            # SKIP LOCKED: concurrent relays take disjoint rows instead of queueing behind each
            # other's row locks (SQLite renders no FOR UPDATE: its one writer serialises claims).
            ids = (
                select(OutboxMessage.id)
                .where(_DUE)
                .order_by(OutboxMessage.id)
                .limit(self._batch)
                .with_for_update(skip_locked=True)
            )
            # The outer WHERE repeats the claim test so that a concurrent relay's
            # claim, committed meanwhile, is re-checked (PostgreSQL re-evaluates it).
            result = await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(ids.scalar_subquery()), _DUE)
                .values(claimed_until=now + self.lease)
                .returning(OutboxMessage),
                {"now": now},
            )
            rows = list(result.scalars())
        rows.sort(key=lambda r: r.id)
        return rows

    async def _attempt(self, row: OutboxMessage) -> BaseException | None:
        """Publish *row* within the send timeout; what failed it, instead of raising that."""
        try:
            async with asyncio.timeout(_SEND_TIMEOUT):
                await self._publish(row)
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the caller's own cancellation, not a failed publish
            return exc
        except Exception as exc:
            return exc
        return None

    async def _publish(self, row: OutboxMessage) -> None:
        message = Message(
            body=row.body.encode(),
            message_id=row.message_id,
            type=row.message_type,
            correlation_id=row.correlation_id,
            routing_key=row.routing_key,
        )
        await self._broker.publish(row.exchange, row.routing_key, message)
