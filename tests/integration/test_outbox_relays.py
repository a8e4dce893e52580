"""Several outbox relays, each with its own engine and connection as separate processes have."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

import aio_pika
import pytest
from sqlalchemy import func, select

from shared.db.migrate import upgrade
from shared.db.models import OutboxMessage, utcnow
from shared.db.session import Database
from shared.events import new_event
from shared.messaging.amqp import AmqpBroker
from shared.messaging.outbox import OutboxRelay, insert_outbox, outbox_message
from shared.messaging.topology import EVENTS_EXCHANGE

pytestmark = pytest.mark.rabbitmq

ROUTING_KEY = "relaytest.row"
# A guard against hanging, not a speed claim.
GUARD_SECONDS = 60
# The dead relay's lease; the survivor's clock is moved across it, never waited out.
LEASE_SECONDS = 30.0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated SQLite file or a migrated fresh PostgreSQL database."""
    url: str
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'relays.db'}"
    await upgrade(url)
    return url


@asynccontextmanager
async def own_queue(amqp_url: str) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    """A queue of the test's own, bound to the events exchange for ROUTING_KEY."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue("relaytest", durable=True)
        await queue.bind(exchange, ROUTING_KEY)
        yield queue
    finally:
        await connection.close()


@asynccontextmanager
async def relays(
    database_url: str,
    amqp_url: str,
    count: int,
    *,
    batch: int = 200,
    lease_seconds: float = 30.0,
    clock: Callable[[], datetime] = utcnow,
) -> AsyncIterator[list[OutboxRelay]]:
    """*count* relays, each on its own Database engine and its own RabbitMQ connection."""
    async with AsyncExitStack() as stack:
        made = []
        for i in range(count):
            db = Database(database_url)
            stack.push_async_callback(db.dispose)
            broker = AmqpBroker(amqp_url, queues=(), connection_name=f"relay-{i}")
            await broker.start()
            stack.push_async_callback(broker.close)
            made.append(
                OutboxRelay(db, broker, batch=batch, lease_seconds=lease_seconds, clock=clock)
            )
        yield made


async def write_rows(database_url: str, count: int, *, claimed: bool) -> set[str]:
    """Commit *count* outbox rows (unclaimed, as a writer's failed send leaves them); their ids."""
    rows = []
    for i in range(count):
        row = outbox_message(EVENTS_EXCHANGE, ROUTING_KEY, new_event("t", "test", str(i), {}))
        if not claimed:
            row.claimed_until = None
        rows.append(row)
    db = Database(database_url)
    try:
        async with db.write() as session:
            await insert_outbox(session, rows)
    finally:
        await db.dispose()
    return {row.message_id for row in rows}


async def outbox_count(database_url: str) -> int:
    db = Database(database_url)
    try:
        async with db.read() as session:
            return int(await session.scalar(select(func.count()).select_from(OutboxMessage)) or 0)
    finally:
        await db.dispose()


async def received(queue: aio_pika.abc.AbstractQueue) -> Counter[str]:
    """Take every message from *queue*; how often each message id arrived."""
    seen: Counter[str] = Counter()
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        seen[message.message_id or ""] += 1
    return seen


async def drain(relay: OutboxRelay) -> None:
    """Flush until this relay finds nothing left to claim."""
    while await relay.flush():
        pass


async def test_relays_hand_each_row_to_exactly_one(database_url: str, amqp_url: str) -> None:
    ids = await write_rows(database_url, 400, claimed=False)
    async with (
        own_queue(amqp_url) as queue,
        relays(database_url, amqp_url, 4, batch=25) as running,
    ):
        async with asyncio.timeout(GUARD_SECONDS):
            await asyncio.gather(*(drain(relay) for relay in running))
        arrived = await received(queue)
    assert set(arrived) == ids
    assert max(arrived.values()) == 1, "a row was published twice"
    assert sum(relay.published for relay in running) == 400
    # Each relay did part of the work: they really ran side by side.
    assert sum(1 for relay in running if relay.published) > 1
    assert await outbox_count(database_url) == 0


async def test_rows_of_a_dead_relay_are_published_after_its_lease(
    database_url: str, amqp_url: str
) -> None:
    ids = await write_rows(database_url, 50, claimed=False)
    # The survivor reads a clock the test moves past the lease: no race with a slow machine.
    ahead = timedelta(0)
    async with (
        own_queue(amqp_url) as queue,
        relays(database_url, amqp_url, 1, lease_seconds=LEASE_SECONDS) as (dead,),
        relays(database_url, amqp_url, 1, clock=lambda: utcnow() + ahead) as (survivor,),
    ):
        assert len(await dead.claim()) == 50
        # The dead relay never publishes nor releases: its lease keeps the others off...
        assert await survivor.flush() == 0
        ahead = timedelta(seconds=LEASE_SECONDS - 1)
        assert await survivor.flush() == 0
        # ...until it runs out.
        ahead = timedelta(seconds=LEASE_SECONDS + 1)
        async with asyncio.timeout(GUARD_SECONDS):
            await drain(survivor)
        arrived = await received(queue)
    assert survivor.published == 50
    assert set(arrived) == ids
    assert max(arrived.values()) == 1
    assert await outbox_count(database_url) == 0
