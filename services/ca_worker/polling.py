"""Polls of requests a CA holds: growing delays through the broker's delay queues."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from shared.ca_jobs import Poll
from shared.db.models import OutboxMessage
from shared.events import CloudEvent, new_event, to_message
from shared.messaging.base import Message
from shared.messaging.outbox import DEFAULT_LEASE, outbox_message
from shared.messaging.topology import CA_POLL, CA_WORKER_QUEUE

SOURCE = "certtoken/ca_worker"


def poll_delay_ms(poll: int, delays_ms: Sequence[int]) -> int:
    """The wait before ask number *poll* (0-based): growing along *delays_ms*, then capped."""
    if not delays_ms:
        raise ValueError("no poll delays")
    return delays_ms[min(max(poll, 0), len(delays_ms) - 1)]


def poll_queue(poll: int, delays_ms: Sequence[int]) -> str:
    """The delay queue that hands the poll back to the ca_worker's queue when it expires."""
    return CA_WORKER_QUEUE.retry_queue(poll_delay_ms(poll, delays_ms))


def poll_event(job: Poll, correlation_id: str) -> CloudEvent:
    """The ``ca.poll`` job as a CloudEvent."""
    return new_event(CA_POLL, SOURCE, job.request_id, job.to_data(), correlation_id)


def poll_outbox(
    job: Poll, delays_ms: Sequence[int], correlation_id: str, lease: timedelta = DEFAULT_LEASE
) -> OutboxMessage:
    """An outbox row that publishes the poll into its delay queue (default exchange)."""
    return outbox_message(
        "", poll_queue(job.poll, delays_ms), poll_event(job, correlation_id), lease
    )


def poll_message(job: Poll, delays_ms: Sequence[int], correlation_id: str) -> tuple[str, Message]:
    """The delay queue and message of the next poll, for a direct publish."""
    return poll_queue(job.poll, delays_ms), to_message(poll_event(job, correlation_id))
