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
from shared.domain import RolloutState
from shared.events import MalformedEvent, decode
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
        """Sign the token's CSR, record the outcome with its event, publish the event."""
        try:
            job = decode(message.body)
            serial = str(job.data["serial"])
        except (MalformedEvent, KeyError) as exc:
            raise Reject(f"malformed csr.sign job: {exc}") from exc
        cid = job.correlation_id or message.correlation_id
        correlation_id.set(cid)

        loaded = await self._book.load(serial)
        if loaded is None:
            log.warning("csr.sign for an unknown token; dropped", extra={"serial": serial})
            return
        token = loaded.token
        if token.rollout_state != RolloutState.SUBMITTED:
            log.info(
                "token already handled; job acknowledged",
                extra={"serial": serial, "rollout_state": token.rollout_state},
            )
            return
        result: SignResult
        try:
            connector = await self._connectors.get(token.ca, loaded.connector)
        except PermanentCAError as exc:
            result = Denied(str(exc))
        else:
            result = await self._sign(connector, token.request, token.template, message)
        try:
            event = await self._book.record(Outcome(token, result, cid))
        except LostRace:
            log.info("token outcome recorded by another worker", extra={"serial": serial})
            return
        log.info(
            "token outcome recorded", extra={"serial": serial, "result": type(result).__name__}
        )
        await self._relay.send([event])

    async def _sign(
        self, connector: Connector, csr: str, template: str, message: Message
    ) -> SignResult:
        try:
            return await connector.sign(csr, Template(name=template or "default"))
        except TemporaryCAError as exc:
            log.warning(
                "CA temporarily unavailable; will retry",
                extra={"attempt": message.attempt, "error": str(exc)},
            )
            raise RetryLater(str(exc)) from exc
        except PermanentCAError as exc:
            return Denied(str(exc))
