"""Jobs a test takes off a queue itself, to hand them to the worker when it chooses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from shared.messaging.base import Broker, Message
from shared.messaging.topology import QueueSpec


class JobTap:
    """The messages a queue delivered to the test, oldest first, until taken."""

    def __init__(self) -> None:
        self.waiting: list[Message] = []

    async def __call__(self, message: Message) -> None:
        """Keep *message* (the broker acks it: the worker never sees it)."""
        self.waiting.append(message)

    async def next(self, kind: str = "", within: float = 10.0) -> Message:
        """The oldest message waiting (of type *kind*, if given), once one came."""
        async with asyncio.timeout(within):
            while True:
                for message in self.waiting:
                    if not kind or message.type == kind:
                        self.waiting.remove(message)
                        return message
                await asyncio.sleep(0.05)


@asynccontextmanager
async def tapped(broker: Broker, queue: QueueSpec) -> AsyncIterator[JobTap]:
    """Consume *queue* into a JobTap for the block."""
    tap = JobTap()
    consumer = await broker.consume(queue, tap)
    try:
        yield tap
    finally:
        await consumer.stop()
