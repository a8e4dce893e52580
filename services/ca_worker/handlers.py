"""The ca_worker's job handler: sign a submitted CSR through its CA connector."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import update

from services.ca_worker.connectors.base import (
    Connector,
    Denied,
    Issued,
    Pending,
    PermanentCAError,
    SignResult,
    Template,
    TemporaryCAError,
)
from services.ca_worker.registry import ConnectorRegistry
from shared.db.models import CAConnector, IssuedCertificate, OutboxMessage, Token, utcnow
from shared.db.session import Database
from shared.domain import EventType, RolloutState
from shared.events import MalformedEvent, decode, new_event
from shared.logs import correlation_id
from shared.messaging.base import Message, Reject, RetryLater
from shared.messaging.outbox import OutboxRelay, enqueue
from shared.messaging.topology import EVENTS_EXCHANGE, event_routing_key

log = logging.getLogger(__name__)

SOURCE = "certtoken/ca_worker"


class _LostRace(Exception):
    """Another worker recorded this token's outcome first."""


class SignHandler:
    """Handles ``csr.sign``: idempotent, so a redelivered job never signs twice."""

    def __init__(
        self,
        db: Database,
        connectors: ConnectorRegistry,
        relay: OutboxRelay,
    ) -> None:
        self._db = db
        self._connectors = connectors
        self._relay = relay

    async def __call__(self, message: Message) -> None:
        """Sign the token's CSR and record the outcome with its event, in one transaction."""
        try:
            job = decode(message.body)
            serial = str(job.data["serial"])
        except (MalformedEvent, KeyError) as exc:
            raise Reject(f"malformed csr.sign job: {exc}") from exc
        correlation_id.set(job.correlation_id or message.correlation_id)

        # A short read: on SQLite every transaction holds the write lock (BEGIN IMMEDIATE).
        async with self._db.read() as session:
            token = await session.get(Token, serial)
            row = await session.get(CAConnector, token.ca) if token else None
        if token is None:
            log.warning("csr.sign for an unknown token; dropped", extra={"serial": serial})
            return
        if token.rollout_state != RolloutState.SUBMITTED:
            log.info(
                "token already handled; job acknowledged",
                extra={"serial": serial, "rollout_state": token.rollout_state},
            )
            return
        result: SignResult
        try:
            connector = await self._connectors.get(token.ca, row)
        except PermanentCAError as exc:
            result = Denied(str(exc))
        else:
            result = await self._sign(connector, token, message)
        try:
            event = await self._record(token, result)
        except _LostRace:
            log.info("token outcome recorded by another worker", extra={"serial": serial})
            return
        await self._relay.send([event])

    async def _sign(self, connector: Connector, token: Token, message: Message) -> SignResult:
        template = Template(name=token.template or "default")
        try:
            result = await connector.sign(token.request, template)
        except TemporaryCAError as exc:
            log.warning(
                "CA temporarily unavailable; will retry",
                extra={"serial": token.serial, "attempt": message.attempt, "error": str(exc)},
            )
            raise RetryLater(str(exc)) from exc
        except PermanentCAError as exc:
            return Denied(str(exc))
        return result

    async def _record(self, token: Token, result: SignResult) -> OutboxMessage:
        """Write the outcome only if the token is still ``submitted`` (first writer wins)."""
        state, values, info = _outcome(token, result)
        async with self._db.write() as session:
            updated = await session.execute(
                update(Token)
                .where(Token.serial == token.serial, Token.rollout_state == RolloutState.SUBMITTED)
                .values(rollout_state=state, info=info, updated_at=utcnow(), **values)
            )
            if updated.rowcount != 1:  # type: ignore[attr-defined]
                raise _LostRace(token.serial)
            if isinstance(result, Issued):
                session.add(
                    IssuedCertificate(
                        ca=token.ca,
                        serial_number=result.serial_number,
                        token_serial=token.serial,
                        subject=result.subject,
                        not_before=result.not_before,
                        not_after=result.not_after,
                        certificate=result.certificate,
                    )
                )
            event = new_event(
                EventType.TOKEN_INIT,
                SOURCE,
                token.serial,
                _event_data(token, state, info),
                correlation_id.get(),
            )
            row = enqueue(
                session, EVENTS_EXCHANGE, event_routing_key(event.type), event, self._relay.lease
            )
        log.info("token outcome recorded", extra={"serial": token.serial, "rollout_state": state})
        return row


def _outcome(
    token: Token, result: SignResult
) -> tuple[RolloutState, dict[str, Any], dict[str, Any]]:
    """The new state, column values and token info for a connector's answer."""
    info = dict(token.info)
    if isinstance(result, Issued):
        info.update(
            certificate_serial=result.serial_number,
            certificate_subject=result.subject,
            certificate_not_after=result.not_after.isoformat(),
        )
        return RolloutState.ENROLLED, {"certificate": result.certificate}, info
    if isinstance(result, Pending):
        info["request_id"] = result.request_id
        return RolloutState.PENDING, {}, info
    info["reason"] = result.reason
    return RolloutState.FAILED, {}, info


def _event_data(token: Token, state: RolloutState, info: dict[str, Any]) -> dict[str, Any]:
    """What a ``token_init`` event tells subscribers (never a secret)."""
    data: dict[str, Any] = {
        "serial": token.serial,
        "tokentype": token.tokentype,
        "rollout_state": state.value,
        "username": token.username,
        "realm": token.realm,
        "ca": token.ca,
        "template": token.template,
    }
    for key in (
        "certificate_serial",
        "certificate_subject",
        "certificate_not_after",
        "request_id",
        "reason",
    ):
        if key in info:
            data[key] = info[key]
    return data
