"""The notifier service: consumes ``token.*`` events (rules come with the notifier issue)."""

from __future__ import annotations

import logging

from shared.events import MalformedEvent, decode
from shared.logs import correlation_id
from shared.messaging.base import Broker, Consumer, Message, Reject
from shared.messaging.topology import NOTIFIER_QUEUE

log = logging.getLogger(__name__)


async def log_event(message: Message) -> None:
    """Log one event with its correlation id; park what is not a CloudEvent."""
    try:
        event = decode(message.body)
    except MalformedEvent as exc:
        raise Reject(str(exc)) from exc
    correlation_id.set(event.correlation_id or message.correlation_id)
    log.info(
        "event received",
        extra={
            "event_id": event.id,
            "event_type": event.type,
            "serial": event.subject,
            "rollout_state": event.data.get("rollout_state"),
        },
    )


class Notifier:
    """Starts and stops the event consumer."""

    name = "notifier"

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._consumer: Consumer | None = None

    async def start(self) -> None:
        """Begin consuming events."""
        self._consumer = await self._broker.consume(NOTIFIER_QUEUE, log_event)

    async def stop(self) -> None:
        """Finish the events in hand."""
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
