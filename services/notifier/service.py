"""The notifier service: consumes ``token.*`` events and mails what event handlers ask for."""

from __future__ import annotations

import asyncio

from services.notifier.config_cache import ConfigCache
from services.notifier.deliveries import DeliveryBook
from services.notifier.mailer import Mailer
from services.notifier.transport import Transports
from shared.config import Settings
from shared.db.session import Database
from shared.messaging.base import Broker, Consumer
from shared.messaging.topology import NOTIFIER_JOBS_QUEUE, NOTIFIER_QUEUE
from shared.security import SecretBox


class Notifier:
    """Starts the event and retry-job consumers; stops them draining."""

    name = "notifier"

    def __init__(self, settings: Settings, broker: Broker, db: Database) -> None:
        self.transports = Transports(
            settings.mail_outbox, settings.smtp_ca_file, settings.smtp_pool_size
        )
        self.mailer = Mailer(
            db,
            DeliveryBook(db),
            self.transports,
            ConfigCache(db, SecretBox(lambda: settings.resolved_secret_key)),
            max_attempts=settings.max_attempts,
            claim_margin=settings.notifier_claim_margin_seconds,
            default_sender=settings.mail_sender,
        )
        self._broker = broker
        self._drain = settings.drain_seconds
        self._consumers: list[Consumer] = []

    async def start(self) -> None:
        """Begin consuming events and retry jobs."""
        self._consumers = [
            await self._broker.consume(NOTIFIER_QUEUE, self.mailer.on_event),
            await self._broker.consume(NOTIFIER_JOBS_QUEUE, self.mailer.on_retry),
        ]

    async def stop(self) -> None:
        """Finish the events in hand, then close SMTP connections."""
        consumers, self._consumers = self._consumers, []
        # Together: a queue still consuming while another drains would take new events.
        await asyncio.gather(*(consumer.stop(self._drain) for consumer in consumers))
        await self.transports.close()
