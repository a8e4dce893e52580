"""The ca_worker service: consumes signing jobs and relays its own events."""

from __future__ import annotations

from services.ca_worker.handlers import SignHandler
from services.ca_worker.registry import ConnectorRegistry
from services.ca_worker.tokenbook import TokenBook
from shared.config import Settings
from shared.db.session import Database
from shared.messaging.base import Broker, Consumer
from shared.messaging.outbox import OutboxRelay
from shared.messaging.topology import CA_WORKER_QUEUE


class CAWorker:
    """Starts the ``csr.sign`` consumer and the outbox relay; stops them draining."""

    name = "ca_worker"

    def __init__(self, settings: Settings, broker: Broker, db: Database) -> None:
        self.relay = OutboxRelay(
            db,
            broker,
            batch=settings.outbox_batch,
            poll_seconds=settings.outbox_poll_seconds,
            lease_seconds=settings.outbox_lease_seconds,
        )
        registry = ConnectorRegistry(db, settings.data_dir, settings.resolved_ca_passphrase)
        self.handler = SignHandler(TokenBook(db, self.relay.lease), registry, self.relay)
        self._broker = broker
        self._consumer: Consumer | None = None

    async def start(self) -> None:
        """Begin consuming."""
        self.relay.start()
        self._consumer = await self._broker.consume(CA_WORKER_QUEUE, self.handler)

    async def stop(self) -> None:
        """Finish the jobs in hand, then publish what they left in the outbox."""
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        await self.relay.stop()
