"""The broker interface every adapter implements, and the message it carries."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.messaging.topology import QueueSpec


@dataclass(frozen=True)
class Message:
    """One AMQP-style message: a body and the properties certtoken uses."""

    body: bytes
    message_id: str
    type: str
    correlation_id: str = ""
    headers: Mapping[str, Any] = field(default_factory=dict)
    routing_key: str = ""
    attempt: int = 1
    redelivered: bool = False


Handler = Callable[[Message], Awaitable[None]]


class RetryLater(Exception):
    """The handler hit a temporary fault: deliver again after a growing delay."""


class Reject(Exception):
    """The message can never be handled: park it for an operator at once."""


class Unroutable(Exception):
    """The broker had no queue for a mandatory message."""


class Consumer(abc.ABC):
    """A running subscription."""

    @abc.abstractmethod
    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop taking messages and wait for the ones in hand to finish."""


class Broker(abc.ABC):
    """Publishes with confirms and consumes with ack-after-handler, retry and parking."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect and declare the topology."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop consumers and disconnect."""

    @abc.abstractmethod
    async def publish(self, exchange: str, routing_key: str, message: Message) -> None:
        """Publish persistently; return once the broker confirmed; raise Unroutable."""

    @abc.abstractmethod
    async def consume(
        self, queue: QueueSpec, handler: Handler, *, prefetch: int | None = None
    ) -> Consumer:
        """Feed *queue* to *handler*, *prefetch* (default: the broker's) at once; ack after it
        returns, retry or park when it raises."""

    @abc.abstractmethod
    async def subscribe(self, exchange: str, pattern: str, handler: Handler) -> Consumer:
        """A private, auto-deleted queue bound to *exchange* by *pattern* (no retries)."""

    @abc.abstractmethod
    async def ping(self) -> bool:
        """Whether the broker is reachable now."""

    @abc.abstractmethod
    async def queue_depth(self, queue: str) -> int:
        """Messages ready in *queue* (for readiness, tests and operators)."""

    @abc.abstractmethod
    async def peek_parked(self, queue_spec: QueueSpec, limit: int = 20) -> list[dict[str, Any]]:
        """Describe up to *limit* parked messages of *queue_spec*, leaving them parked."""

    @abc.abstractmethod
    async def replay_parked(self, queue_spec: QueueSpec, limit: int | None = None) -> int:
        """Move parked messages back to their queue, attempts reset; return how many."""
