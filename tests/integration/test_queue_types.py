"""RabbitMQ queue types as the broker reports them, and the delivery limit that parks poison."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from uuid import uuid4

import aio_pika
import pytest

from shared.messaging.amqp import AmqpBroker
from shared.messaging.base import Message
from shared.messaging.topology import JOBS_EXCHANGE, QueueSpec
from tests.support.amqp import vhost_url

pytestmark = pytest.mark.rabbitmq
DELAYS = (50, 100)


@pytest.fixture
def vhost() -> Iterator[tuple[str, str]]:
    """A fresh vhost: its URL and its name."""
    with vhost_url() as url:
        yield url, url.rsplit("/", 1)[1]


def queues_of(vhost: str) -> dict[str, tuple[str, str]]:
    """Each queue of *vhost* with its type and arguments, as ``rabbitmqctl`` lists them."""
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "type", "arguments"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = [line.split("\t") for line in listed.splitlines()[1:] if line.strip()]
    return {name: (kind, arguments) for name, kind, arguments in rows}


def work_queue() -> QueueSpec:
    tag = uuid4().hex[:8]
    return QueueSpec(f"test.{tag}.work", JOBS_EXCHANGE, (f"test.{tag}.job",))


@pytest.mark.parametrize("queue_type", ["quorum", "classic"])
async def test_queues_are_declared_with_the_configured_type(
    vhost: tuple[str, str], queue_type: str
) -> None:
    url, name = vhost
    spec = work_queue()
    options = {} if queue_type == "quorum" else {"queue_type": queue_type}
    broker = AmqpBroker(url, queues=[spec], retry_delays_ms=DELAYS, **options)  # type: ignore[arg-type]
    await broker.start()
    await broker.close()
    listed = queues_of(name)
    expected = [spec.name, spec.parking, *(spec.retry_queue(d) for d in DELAYS)]
    assert {q: listed[q][0] for q in expected} == dict.fromkeys(expected, queue_type)
    if queue_type == "quorum":
        main = listed[spec.name][1]
        assert "x-delivery-limit" in main and "at-least-once" in main, main
    else:
        assert "x-delivery-limit" not in listed[spec.name][1]


async def test_a_message_that_keeps_crashing_its_consumer_is_parked(
    vhost: tuple[str, str],
) -> None:
    url, _ = vhost
    spec = work_queue()
    broker = AmqpBroker(url, queues=[spec], retry_delays_ms=DELAYS, delivery_limit=2)
    await broker.start()
    try:
        await broker.publish(
            JOBS_EXCHANGE,
            spec.routing_keys[0],
            Message(body=b"{}", type="csr_sign", message_id="poison"),
        )
        connection = await aio_pika.connect(url)
        async with connection:
            # A consumer that dies holding the message, again and again: no ack, channel gone.
            for _ in range(4):
                channel = await connection.channel()
                queue = await channel.get_queue(spec.name)
                taken = await queue.get(no_ack=False, fail=False)
                await channel.close()
                if taken is None:
                    break
            async with asyncio.timeout(10):
                while await broker.queue_depth(spec.parking) != 1:  # noqa: ASYNC110 - broker state
                    await asyncio.sleep(0.05)
        assert await broker.queue_depth(spec.name) == 0
    finally:
        await broker.close()
