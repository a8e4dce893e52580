"""Publish and round-trip throughput of AmqpBroker against a real RabbitMQ (prints figures)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

import aio_pika

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.messaging.amqp import AmqpBroker
from shared.messaging.base import Message
from shared.messaging.topology import JOBS_EXCHANGE, QueueSpec

DEFAULT_URL = os.environ.get("CERTTOKEN_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
DELAYS = (1000,)


def _messages(n: int) -> list[Message]:
    body = b'{"specversion":"1.0","type":"csr_sign","data":{"serial":"CRT00000001"}}'
    return [
        Message(body=body, message_id=uuid.uuid4().hex, type="csr_sign", correlation_id="bench")
        for _ in range(n)
    ]


def _report(label: str, n: int, elapsed: float) -> None:
    print(f"{label:<32} {n} msgs in {elapsed:.2f}s = {n / elapsed:>7,.0f} msg/s")


async def _publish_all(broker: AmqpBroker, key: str, messages: list[Message]) -> float:
    start = time.perf_counter()
    await asyncio.gather(*(broker.publish(JOBS_EXCHANGE, key, m) for m in messages))
    return time.perf_counter() - start


async def run(url: str, n: int, prefetch: int) -> None:
    """Phase 1: publish N with confirms; phase 2: publish N while consuming them."""
    tag = uuid.uuid4().hex[:8]
    spec = QueueSpec(f"bench.{tag}.work", JOBS_EXCHANGE, (f"bench.{tag}.job",))
    key = spec.routing_keys[0]
    broker = AmqpBroker(url, prefetch=prefetch, retry_delays_ms=DELAYS, queues=[spec])
    await broker.start()
    try:
        elapsed = await _publish_all(broker, key, _messages(n))
        _report("publish (confirmed, persistent)", n, elapsed)

        drained = asyncio.Event()
        seen, target = 0, n

        async def handler(message: Message) -> None:
            nonlocal seen
            seen += 1
            if seen >= target:
                drained.set()

        start = time.perf_counter()
        consumer = await broker.consume(spec, handler)
        await asyncio.wait_for(drained.wait(), 120)
        elapsed = time.perf_counter() - start
        _report("consume backlog (ack each)", n, elapsed)

        target = 2 * n
        drained.clear()
        start = time.perf_counter()
        await _publish_all(broker, key, _messages(n))
        await asyncio.wait_for(drained.wait(), 120)
        elapsed = time.perf_counter() - start
        _report("round trip (publish..handled)", n, elapsed)
        await consumer.stop()
    finally:
        await broker.close()
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            for name in (spec.name, spec.parking, *(spec.retry_queue(d) for d in DELAYS)):
                await channel.queue_delete(name)


def main() -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--prefetch", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="N=500, for a smoke run")
    args = parser.parse_args()
    n = 500 if args.quick else args.n
    print(f"AmqpBroker, N={n}, prefetch={args.prefetch}")
    asyncio.run(run(args.url, n, args.prefetch))


if __name__ == "__main__":
    main()
