"""Where a message goes: topic matching, and the retry or parking route of a failed delivery.

Pure functions shared by both brokers, so that they agree on every header and decision.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.db.faults import storage_outage
from shared.messaging.base import Message, Reject
from shared.messaging.topology import QueueSpec

ATTEMPT = "x-attempt"
ERROR = "x-error"
ORIGINAL_ROUTING_KEY = "x-original-routing-key"
ORIGINAL_EXCHANGE = "x-original-exchange"

MAX_ERROR_CHARS = 1000
# Pause before requeueing a message whose retry or parking copy could not be published,
# so that a lasting fault does not become a hot redelivery loop.
REQUEUE_PAUSE = 1.0
_BROKER_HEADERS = ("x-death", "x-first-death-", "x-last-death-")


def topic_matches(pattern: str, key: str) -> bool:
    """Whether *key* matches an AMQP topic *pattern* (``*`` one word, ``#`` zero or more)."""
    words = key.split(".") if key else []
    parts = pattern.split(".") if pattern else []
    # Simulate the pattern as an automaton: the set of pattern positions reachable so far.
    states = _skip_hashes(parts, {0})
    for word in words:
        following: set[int] = set()
        for pos in states:
            if pos == len(parts):
                continue
            part = parts[pos]
            if part == "#":
                following.add(pos)
            elif part in ("*", word):
                following.add(pos + 1)
        if not following:
            return False
        states = _skip_hashes(parts, following)
    return len(parts) in states


def _skip_hashes(parts: Sequence[str], states: set[int]) -> set[int]:
    """Add the positions reached by letting each ``#`` match zero words."""
    todo = list(states)
    reached = set(states)
    while todo:
        pos = todo.pop()
        if pos < len(parts) and parts[pos] == "#" and pos + 1 not in reached:
            reached.add(pos + 1)
            todo.append(pos + 1)
    return reached


def outgoing_headers(message: Message) -> dict[str, Any]:
    """The headers to publish for *message*: its own, plus ``x-attempt`` after the first."""
    headers = copy.deepcopy(dict(message.headers))
    headers.pop(ATTEMPT, None)
    if message.attempt > 1:
        headers[ATTEMPT] = message.attempt
    return headers


def incoming_message(
    body: bytes,
    *,
    message_id: str,
    type: str,
    correlation_id: str,
    headers: Mapping[str, Any],
    routing_key: str,
    redelivered: bool,
) -> Message:
    """The handler's view of a delivery: attempt and original routing key from the headers."""
    own = {
        name: copy.deepcopy(value)
        for name, value in headers.items()
        if not name.startswith(_BROKER_HEADERS)
    }
    original_key = own.get(ORIGINAL_ROUTING_KEY)
    return Message(
        body=body,
        message_id=message_id,
        type=type,
        correlation_id=correlation_id,
        headers=own,
        routing_key=original_key if isinstance(original_key, str) else routing_key,
        attempt=_attempt(own.get(ATTEMPT)),
        redelivered=redelivered,
    )


def _attempt(value: object) -> int:
    """A positive attempt number from a header value; 1 when missing or unreadable."""
    attempt = 1
    if isinstance(value, int):
        attempt = value
    elif isinstance(value, str | bytes):
        try:
            attempt = int(value)
        except ValueError:
            return 1
    return max(attempt, 1)


def describe_error(error: BaseException) -> str:
    """The ``x-error`` text: exception type and message, bounded."""
    text = f"{type(error).__name__}: {error}"
    return text[:MAX_ERROR_CHARS]


@dataclass(frozen=True)
class FailureRoute:
    """Where a failed delivery's copy goes (via the default exchange) and with which headers."""

    queue: str
    headers: dict[str, Any]
    delay_ms: int | None

    @property
    def parked(self) -> bool:
        """Whether this is the end of the road: the parking queue."""
        return self.delay_ms is None


def failure_route(
    spec: QueueSpec,
    message: Message,
    error: BaseException,
    *,
    exchange: str,
    retry_delays_ms: Sequence[int],
    max_attempts: int,
) -> FailureRoute:
    """Retry *message* after a delay, or park it when it was rejected or out of attempts."""
    headers = copy.deepcopy(dict(message.headers))
    headers[ORIGINAL_ROUTING_KEY] = message.routing_key
    headers.setdefault(ORIGINAL_EXCHANGE, exchange)
    headers[ERROR] = describe_error(error)
    # A storage outage (a full disk) is not the message's fault: it is retried, at the growing
    # then capped delays, for as long as the outage lasts; it never parks the message.
    retry = not isinstance(error, Reject) and message.attempt < max_attempts
    if retry or storage_outage(error):
        delay = retry_delays_ms[min(message.attempt - 1, len(retry_delays_ms) - 1)]
        headers[ATTEMPT] = message.attempt + 1
        return FailureRoute(spec.retry_queue(delay), headers, delay)
    headers[ATTEMPT] = message.attempt
    return FailureRoute(spec.parking, headers, None)


def log_route(log: logging.Logger, spec: QueueSpec, message: Message, route: FailureRoute) -> None:
    """Say where a failed message goes (never its body)."""
    log.warning(
        "message parked" if route.parked else "message will be retried",
        extra={
            "message_id": message.message_id,
            "queue": spec.name,
            "attempt": message.attempt,
            "delay_ms": route.delay_ms,
            "error": route.headers.get(ERROR, ""),
        },
    )


def replay_headers(message: Message) -> dict[str, Any]:
    """Headers for a parked message sent back to its queue: attempts start again at 1."""
    headers = copy.deepcopy(dict(message.headers))
    headers.pop(ATTEMPT, None)
    headers.pop(ERROR, None)
    headers[ORIGINAL_ROUTING_KEY] = message.routing_key
    return headers


def parked_summary(message: Message) -> dict[str, Any]:
    """What an operator sees of a parked message (never its body)."""
    return {
        "message_id": message.message_id,
        "type": message.type,
        "correlation_id": message.correlation_id,
        "routing_key": message.routing_key,
        "exchange": message.headers.get(ORIGINAL_EXCHANGE, ""),
        "attempt": message.attempt,
        "error": message.headers.get(ERROR, ""),
    }


def validate_policy(prefetch: int, retry_delays_ms: Sequence[int], max_attempts: int) -> None:
    """Refuse settings that would make the brokers misbehave."""
    if prefetch < 1:
        raise ValueError("prefetch must be at least 1")
    if not retry_delays_ms or any(delay <= 0 for delay in retry_delays_ms):
        raise ValueError("retry delays must be positive milliseconds")
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
