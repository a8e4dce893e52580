"""The ca_worker's job handler: sign a submitted CSR through its CA connector."""

from __future__ import annotations

import logging

from services.ca_worker.connectors.base import (
    Connector,
    Denied,
    PermanentCAError,
    SignResult,
    Template,
    TemporaryCAError,
)
from services.ca_worker.registry import ConnectorRegistry
from services.ca_worker.tokenbook import LostRace, Outcome, TokenBook
from shared.events import MalformedEvent, decode
from shared.jobs import MalformedJob, SignRequest
from shared.logs import correlation_id
from shared.messaging.base import Message, Reject, RetryLater
from shared.messaging.outbox import OutboxRelay

log = logging.getLogger(__name__)


class SignHandler:
    """Handles ``csr.sign``: idempotent, so a redelivered job never records twice."""

    def __init__(self, book: TokenBook, connectors: ConnectorRegistry, relay: OutboxRelay) -> None:
        self._book = book
        self._connectors = connectors
        self._relay = relay

    async def __call__(self, message: Message) -> None:
        """Sign the job's CSR, record the outcome with its event, publish the event."""
        try:
            event = decode(message.body)
            job = SignRequest.from_data(event.data)
        except (MalformedEvent, MalformedJob) as exc:
            raise Reject(f"malformed csr.sign job: {exc}") from exc
        cid = event.correlation_id or message.correlation_id
        correlation_id.set(cid)

        result: SignResult
        try:
            connector = await self._connectors.get(job.ca)
        except PermanentCAError as exc:
            result = Denied(str(exc))
        else:
            result = await self._sign(connector, job, message)
        try:
            row = await self._book.record(Outcome(job, result, cid))
        except LostRace:
            # A redelivered job: the outcome is on record already, this signature unused.
            log.info("token already handled; job acknowledged", extra={"serial": job.serial})
            return
        log.info("outcome recorded", extra={"serial": job.serial, "result": type(result).__name__})
        await self._relay.send([row])

    async def _sign(self, connector: Connector, job: SignRequest, message: Message) -> SignResult:
        try:
            return await connector.sign(job.request, Template(name=job.template or "default"))
        except TemporaryCAError as exc:
            log.warning(
                "CA temporarily unavailable; will retry",
                extra={"serial": job.serial, "attempt": message.attempt, "error": str(exc)},
            )
            raise RetryLater(str(exc)) from exc
        except PermanentCAError as exc:
            return Denied(str(exc))
