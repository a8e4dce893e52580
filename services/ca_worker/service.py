"""The ca_worker service: consumes CA jobs, keeps CRLs fresh and relays its own events."""

from __future__ import annotations

import asyncio
import os

from services.ca_worker.expiry import ExpiryScanner
from services.ca_worker.handlers import JobRouter, SignHandler
from services.ca_worker.keygen import KeyPool
from services.ca_worker.lifecycle import Lifecycle
from services.ca_worker.publication import CHECK_SECONDS, Publisher
from services.ca_worker.registry import ConnectorRegistry
from services.ca_worker.tokenbook import TokenBook
from services.ca_worker.tokenkeys import TokenKeys
from shared.ca_hosts import HostPolicy
from shared.config import Settings
from shared.db.session import Database
from shared.messaging.base import Broker, Consumer
from shared.messaging.outbox import OutboxRelay
from shared.messaging.topology import (
    CA_APPROVE,
    CA_DELETE,
    CA_DENY,
    CA_POLL,
    CA_REVOKE,
    CA_WORKER_QUEUE,
    CSR_SIGN,
    KEYGEN_QUEUE,
)
from shared.security import SecretBox


class CAWorker:
    """Starts the job consumer, CA publisher, expiry scan and outbox relay; stops them draining."""

    name = "ca_worker"

    def __init__(
        self,
        settings: Settings,
        broker: Broker,
        db: Database,
        *,
        publish_check_seconds: float = CHECK_SECONDS,
    ) -> None:
        self.relay = OutboxRelay(
            db,
            broker,
            batch=settings.outbox_batch,
            poll_seconds=settings.outbox_poll_seconds,
            lease_seconds=settings.outbox_lease_seconds,
        )
        box = SecretBox(lambda: settings.resolved_secret_key)
        self.registry = ConnectorRegistry(
            db,
            settings.data_dir,
            settings.resolved_ca_passphrase,
            box,
            HostPolicy(settings.ca_allowed_hosts),
            public_url=settings.public_url,
        )
        # Polls of requests a CA holds wait in the broker's delay queues: the retry delays.
        delays = settings.retry_delays_ms
        self.publisher = Publisher(db, self.registry, box, publish_check_seconds)
        # Made on the first genkey job: a worker without genkey tokens starts no processes.
        self.keys = KeyPool(settings.keygen_workers or os.cpu_count() or 1)
        token_keys = TokenKeys(db, box, self.keys)
        self.handler = SignHandler(
            TokenBook(db, self.relay.lease),
            self.registry,
            self.relay,
            db,
            delays,
            self.publisher.ensure,
            token_keys,
        )
        self.lifecycle = Lifecycle(
            db,
            self.registry,
            self.relay,
            broker,
            delays,
            self.publisher.refresh,
            self.relay.lease,
            token_keys,
        )
        self.router = JobRouter(
            {
                CSR_SIGN: self.handler,
                CA_APPROVE: self.lifecycle.approve,
                CA_DENY: self.lifecycle.deny,
                CA_POLL: self.lifecycle.poll,
                CA_REVOKE: self.lifecycle.revoke,
                CA_DELETE: self.lifecycle.delete,
            }
        )
        self.expiry = ExpiryScanner(
            db,
            self.relay,
            period_seconds=settings.expiry_scan_seconds,
            ca_warning_days=settings.ca_expiry_warning_days,
        )
        self._broker = broker
        self._drain = settings.drain_seconds
        self._consumers: list[Consumer] = []

    async def start(self) -> None:
        """Publish what local CAs owe (CRL, OCSP responder), then begin consuming."""
        self.relay.start()
        await self.publisher.refresh_all()
        self.publisher.start()
        self.expiry.start()
        self._consumers.append(await self._broker.consume(CA_WORKER_QUEUE, self.router))
        # As many genkey jobs in hand as the pool has processes: the rest wait in their own
        # queue, never in the prefetch window that CSR and lifecycle jobs share.
        self._consumers.append(
            await self._broker.consume(KEYGEN_QUEUE, self.router, prefetch=self.keys.workers)
        )

    async def stop(self) -> None:
        """Finish and acknowledge the jobs in hand, then publish what they left in the outbox."""
        consumers, self._consumers = self._consumers, []
        # Together: a queue still consuming while another drains would take new jobs.
        await asyncio.gather(*(consumer.stop(self._drain) for consumer in consumers))
        await self.keys.shutdown()
        await self.expiry.stop()
        await self.publisher.stop()
        await self.relay.stop()
        await self.registry.close()
