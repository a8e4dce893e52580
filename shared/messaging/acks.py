"""Acks in as few frames as possible: one multiple ack per channel and loop turn where it can."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field

from aio_pika.abc import AbstractIncomingMessage

log = logging.getLogger(__name__)

# Why not one ack per message: RabbitMQ's quorum-queue client in the channel stashes settles
# beyond 32 pending ones and drops the stash when the channel closes (rabbitmq-server#10327),
# so a batch acked one by one just before a stop came back to the queue, handled. One
# multiple ack is one settle command, and it costs RabbitMQ one frame instead of a batch.


@dataclass
class TagBook:
    """One channel's delivery tags: those not settled yet, and the handled among them."""

    unsettled: set[int] = field(default_factory=set)
    handled: set[int] = field(default_factory=set)

    def take(self) -> tuple[list[int], list[int]]:
        """Settle the handled tags: (those one multiple ack up to the last covers, the rest)."""
        waiting = self.unsettled - self.handled
        first_waiting = min(waiting, default=None)
        below = sorted(t for t in self.handled if first_waiting is None or t < first_waiting)
        singles = sorted(self.handled.difference(below))
        self.unsettled -= self.handled
        self.handled = set()
        return below, singles


@dataclass
class _Channel:
    """A channel's tags, and the handled messages waiting for their ack."""

    book: TagBook = field(default_factory=TagBook)
    handled: dict[int, AbstractIncomingMessage] = field(default_factory=dict)


class Acker:
    """Acks the deliveries of one consumer once handled, a loop turn later, coalesced."""

    def __init__(self) -> None:
        self._channels: dict[object, _Channel] = {}
        self._sending: asyncio.Task[None] | None = None

    def delivered(self, incoming: AbstractIncomingMessage) -> None:
        """Note a delivery that is not settled yet (it holds back multiple acks above it)."""
        self._channel(incoming).book.unsettled.add(_tag(incoming))

    def handled(self, incoming: AbstractIncomingMessage) -> None:
        """Ack *incoming* with the next batch of acks."""
        tag, channel = _tag(incoming), self._channel(incoming)
        channel.book.handled.add(tag)
        channel.handled[tag] = incoming
        if self._sending is None:
            self._sending = asyncio.create_task(self._send())

    async def nack(self, incoming: AbstractIncomingMessage) -> None:
        """Requeue *incoming* now; its tag no longer holds back the acks above it."""
        await _settle(incoming.nack(requeue=True))
        self._channel(incoming).book.unsettled.discard(_tag(incoming))

    async def drain(self) -> None:
        """Return once every handled delivery was acked (or its channel is gone)."""
        while self._sending is not None:
            await asyncio.shield(self._sending)

    async def _send(self) -> None:
        try:
            while plans := [
                (c.book.take(), c.handled) for c in list(self._channels.values()) if c.book.handled
            ]:
                for (covered, singles), messages in plans:
                    if covered:
                        last = messages.pop(covered[-1])
                        for tag in covered[:-1]:
                            del messages[tag]
                        await _settle(last.ack(multiple=True))
                    for tag in singles:
                        await _settle(messages.pop(tag).ack())
        finally:
            self._sending = None

    def _channel(self, incoming: AbstractIncomingMessage) -> _Channel:
        channel = incoming.channel
        if channel not in self._channels:
            # A reconnect brings a new channel, its tags from 1: a closed one's are done with.
            for gone in [c for c in self._channels if getattr(c, "is_closed", False)]:
                del self._channels[gone]
            self._channels[channel] = _Channel()
        return self._channels[channel]


def _tag(incoming: AbstractIncomingMessage) -> int:
    return int(incoming.delivery_tag or 0)


async def _settle(outcome: Awaitable[None]) -> None:
    """Await an ack or nack; a closed channel means RabbitMQ will redeliver anyway."""
    try:
        await outcome
    except Exception as exc:
        log.warning(
            "ack/nack lost with its channel; expect a redelivery", extra={"error": repr(exc)}
        )
