"""Later changes of a token: a manager's decision, a CA's late answer, revocation, deletion."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import select, update

from services.ca_worker.connectors.base import (
    Connector,
    Denied,
    Issued,
    Pending,
    PermanentCAError,
    SignResult,
    TemporaryCAError,
)
from services.ca_worker.connectors.local import LocalConnector
from services.ca_worker.handlers import owner_of
from services.ca_worker.jobs import acknowledge_impossible, read_job
from services.ca_worker.outcomes import facts_of
from services.ca_worker.polling import poll_message, poll_outbox
from services.ca_worker.precheck import postcheck
from services.ca_worker.registry import ConnectorRegistry
from services.ca_worker.tokenbook import issued_record
from services.ca_worker.tokenkeys import SECRETS_DROPPED, TokenKeys
from shared.ca_jobs import Decision, Poll, Retirement
from shared.db.models import (
    CARequest,
    IssuedCertificate,
    OutboxMessage,
    Token,
    TokenKey,
    utcnow,
)
from shared.db.session import Database
from shared.domain import EventType
from shared.events import new_event
from shared.messaging.base import Broker, Message, Reject, RetryLater
from shared.messaging.outbox import OutboxRelay, insert_outbox, outbox_message
from shared.messaging.topology import EVENTS_EXCHANGE, event_routing_key
from shared.token_events import token_event_data
from shared.token_states import (
    Facts,
    ImpossibleTransition,
    State,
    Transition,
    Trigger,
    allows,
    state_of,
    transition,
)

log = logging.getLogger(__name__)

SOURCE = "certtoken/ca_worker"
DELETE_REASON = "cessationOfOperation"

Refresh = Callable[[str], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class _Settlement:
    """How a held request ends: what happens to its token, and the request's new status."""

    trigger: Trigger
    status: str
    facts: Facts
    issued: Issued | None = None


def settlement(result: SignResult) -> _Settlement | None:
    """The end of a held request for a CA answer; None while it stays pending."""
    if isinstance(result, Issued):
        return _Settlement(Trigger.ISSUE_HELD, "issued", facts_of(result), result)
    if isinstance(result, Denied):
        return refusal(result)
    return None


def refusal(result: Denied) -> _Settlement:
    """The end of a held request that the CA refused."""
    return _Settlement(Trigger.REFUSE_HELD, "denied", facts_of(result))


def retirement(
    state: State, info: dict[str, Any], facts: Facts, *, delete: bool
) -> list[Transition]:
    """The token's moves for ``ca.revoke``, or ``ca.delete`` (revoked first where it can be)."""
    moves: list[Transition] = []
    if not delete or allows(state, Trigger.REVOKE):
        moves.append(transition(state, Trigger.REVOKE, info, facts))
    if delete:
        last = moves[-1] if moves else Transition(state, info, None)
        moves.append(transition(last.state, Trigger.DELETE, last.info))
    return moves


class Lifecycle:
    """Handles ``ca.approve``, ``ca.deny``, ``ca.poll``, ``ca.revoke`` and ``ca.delete``."""

    def __init__(
        self,
        db: Database,
        registry: ConnectorRegistry,
        relay: OutboxRelay,
        broker: Broker,
        poll_delays_ms: Sequence[int],
        refresh_publication: Refresh,
        lease: timedelta,
        keys: TokenKeys,
    ) -> None:
        self._db = db
        self._keys = keys
        self._registry = registry
        self._relay = relay
        self._broker = broker
        self._poll_delays = tuple(poll_delays_ms)
        self._refresh = refresh_publication
        self._lease = lease

    # --- decisions and polls ----------------------------------------------------------------

    async def approve(self, message: Message) -> None:
        """Submit a held request to the CA now that a manager approved it."""
        job, cid = read_job(message, Decision)
        request = await self._open_request(job.request_id)
        if request is None or request.kind != "approval":
            return
        result: SignResult
        try:
            connector = await self._registry.get(request.ca)
            template = await self._registry.template(request.ca, request.template)
            owner = await owner_of(self._db, request.username, request.realm, request.requester)
            result = await connector.sign(
                request.csr, dataclasses.replace(template, approval="none"), owner
            )
        except TemporaryCAError as exc:
            log.warning(
                "CA unavailable for an approved request; will retry", extra={"error": str(exc)}
            )
            raise RetryLater(str(exc)) from exc
        except PermanentCAError as exc:
            result = exc.denied()
        if isinstance(result, Pending):
            await self._hand_to_ca(request, result, connector, cid)
            return
        end = settlement(result)
        assert end is not None
        key = await self._completed_key(request, end, connector)
        await self._settle(request.id, end, job.admin, cid, key)

    async def deny(self, message: Message) -> None:
        """A manager refused a held request: the token ends denied with the reason."""
        job, cid = read_job(message, Decision)
        end = _Settlement(Trigger.DENY, "denied", Facts(reason=job.reason or "denied"))
        await self._settle(job.request_id, end, job.admin, cid)

    async def poll(self, message: Message) -> None:
        """Ask the CA about a request it holds; ask again later, less often, while pending."""
        job, cid = read_job(message, Poll)
        request = await self._open_request(job.request_id)
        if request is None or request.kind != "ca":
            return
        try:
            connector = await self._registry.get(request.ca)
            result = await connector.status(request.remote_id)
        except TemporaryCAError as exc:
            log.warning("CA unavailable for a poll", extra={"error": str(exc)})
            result = Pending(request.remote_id)
        except PermanentCAError as exc:
            await self._settle(request.id, refusal(exc.denied()), "", cid)
            return
        if isinstance(result, Issued):
            result = await self._as_decided(request, result)
        end = settlement(result)
        if end is None:
            following = Poll(job.request_id, job.ca, job.poll + 1)
            queue, next_message = poll_message(following, self._poll_delays, cid)
            try:
                await self._broker.publish("", queue, next_message)
            except Exception as exc:
                raise RetryLater(f"could not schedule the next poll: {exc}") from exc
            return
        key = await self._completed_key(request, end, connector)
        await self._settle(request.id, end, "", cid, key)

    async def _as_decided(self, request: CARequest, issued: Issued) -> Issued | Denied:
        """*issued* when it says what certtoken decides for the request now, else a refusal."""
        try:
            template = await self._registry.template(request.ca, request.template)
        except PermanentCAError as exc:
            return Denied(str(exc))
        owner = await owner_of(self._db, request.username, request.realm, request.requester)
        refused = postcheck(request.csr, template, owner, issued)
        if refused is not None:
            log.error(
                "CA issued a certificate beyond the decision",
                extra={"request_id": request.id, "error": refused.reason},
            )
        return refused or issued

    async def _completed_key(
        self, request: CARequest, end: _Settlement, connector: Connector
    ) -> dict[str, Any] | None:
        """A genkey token's PKCS#12, completed now it is issued (privacyIDEA leaves the key)."""
        if end.issued is None:
            return None
        return await self._keys.completion(request.token_serial, end.issued, connector.chain())

    async def _open_request(self, request_id: str) -> CARequest | None:
        async with self._db.read() as session:
            request = await session.get(CARequest, request_id)
        if request is None or request.status != "pending":
            log.info("request not pending; job acknowledged", extra={"request_id": request_id})
            return None
        return request

    async def _hand_to_ca(
        self, request: CARequest, result: Pending, connector: Connector, cid: str
    ) -> None:
        """After approval the CA itself holds the request: remember its id and poll it.

        The first poll is written to the outbox in the same transaction: a redelivered approval
        finds the request handed over and stops, so the poll must not depend on a publish.
        """
        rows: list[OutboxMessage] = []
        if connector.polls:
            poll = Poll(request.id, request.ca, 0)
            rows.append(poll_outbox(poll, self._poll_delays, cid, self._lease))
        async with self._db.write() as session:
            handed = await session.execute(
                update(CARequest)
                .where(
                    CARequest.id == request.id,
                    CARequest.status == "pending",
                    CARequest.kind == "approval",
                )
                .values(kind="ca", remote_id=result.request_id, updated_at=utcnow())
            )
            if not handed.rowcount:  # type: ignore[attr-defined]
                # A concurrent delivery of the approval handed it over (and scheduled its poll).
                return
            await insert_outbox(session, rows)
        await self._relay.send(rows)

    async def _settle(
        self,
        request_id: str,
        end: _Settlement,
        admin: str,
        cid: str,
        key: dict[str, Any] | None = None,
    ) -> None:
        """End a held request and move its token on, exactly once; publish token_update.

        *key* is a genkey token's completed PKCS#12, stored with the outcome; when the request
        ends denied the token's key and password are dropped.
        """
        now = utcnow()
        rows: list[OutboxMessage] = []
        async with self._db.write() as session:
            request = await session.get(CARequest, request_id, with_for_update=True)
            if request is None or request.status != "pending":
                log.info("request already settled", extra={"request_id": request_id})
                return
            serial, ca = request.token_serial, request.ca
            token = await session.get(Token, serial, with_for_update=True)
            previous = state_of(token.rollout_state if token else None)
            try:
                moved = transition(previous, end.trigger, token.info if token else {}, end.facts)
            except ImpossibleTransition as refused:
                acknowledge_impossible(serial, refused)
                return
            assert token is not None
            assert previous is not None
            assert moved.state is not None
            assert moved.emit is not None
            request.status, request.reason, request.updated_at = end.status, end.facts.reason, now
            certificate = ""
            if end.issued is not None:
                certificate = end.issued.certificate
                row, token.certificate_id = issued_record(ca, serial, end.issued, now)
                session.add(IssuedCertificate(**row))
            token.rollout_state = moved.state.value
            token.info = moved.info
            token.certificate = certificate
            token.updated_at = now
            key_values = key if end.issued is not None else SECRETS_DROPPED
            if key_values:
                await session.execute(
                    update(TokenKey)
                    .where(TokenKey.serial == serial, TokenKey.deleted_at.is_(None))
                    .values(**key_values, updated_at=now)
                )
            data = token_event_data(
                token,
                moved.state,
                moved.info,
                certificate=certificate,
                previous=previous.value,
                admin=admin,
            )
            rows.append(self._event(moved.emit, serial, data, cid))
            await insert_outbox(session, rows)
        log.info(
            "held request settled", extra={"serial": serial, "rollout_state": moved.state.value}
        )
        await self._relay.send(rows)

    # --- revocation and deletion ------------------------------------------------------------

    async def revoke(self, message: Message) -> None:
        """``ca.revoke``: the CA revokes the certificate; the token becomes revoked."""
        job, cid = read_job(message, Retirement)
        await self._retire(job, cid, delete=False)

    async def delete(self, message: Message) -> None:
        """``ca.delete``: revoke (or withdraw a held request), then delete the token."""
        job, cid = read_job(message, Retirement)
        await self._retire(job, cid, delete=True)

    async def _retire(self, job: Retirement, cid: str, *, delete: bool) -> None:
        async with self._db.read() as session:
            token = await session.get(Token, job.serial)
            issued = await session.scalar(
                select(IssuedCertificate).where(IssuedCertificate.token_serial == job.serial)
            )
            held = await session.scalar(
                select(CARequest).where(
                    CARequest.token_serial == job.serial, CARequest.status == "pending"
                )
            )
        state = state_of(token.rollout_state if token else None)
        reason = job.reason or ("unspecified" if not delete else DELETE_REASON)
        try:
            retirement(state, {}, Facts(reason=reason), delete=delete)
        except ImpossibleTransition as refused:  # before anything is asked of the CA
            acknowledge_impossible(job.serial, refused)
            return
        assert token is not None
        connector: Connector | None = None
        must_revoke = allows(state, Trigger.REVOKE) and issued is not None
        if must_revoke or held is not None:
            try:
                connector = await self._registry.get(token.ca)
                if must_revoke and issued is not None and issued.revoked_at is None:
                    await connector.revoke(issued.serial_number, reason)
                elif held is not None and held.kind == "ca":
                    await connector.withdraw(held.remote_id)
            except TemporaryCAError as exc:
                raise RetryLater(str(exc)) from exc
            except PermanentCAError as exc:
                # Parked for an operator: a certificate must not look revoked when it is not.
                raise Reject(f"the CA could not revoke {job.serial}: {exc} {exc.detail}") from exc
        revoked, rows = await self._record_retirement(job, reason, cid, delete=delete)
        try:
            if revoked and isinstance(connector, LocalConnector):
                # Before the events go out: whoever hears of the revocation finds it in the CRL.
                await self._refresh(token.ca)
        finally:
            await self._relay.send(rows)

    async def _record_retirement(
        self, job: Retirement, reason: str, cid: str, *, delete: bool
    ) -> tuple[bool, list[OutboxMessage]]:
        """Revoked and/or deleted, with events, in one transaction; whether it revoked."""
        now = utcnow()
        rows: list[OutboxMessage] = []
        revoked = False
        async with self._db.write() as session:
            token = await session.get(Token, job.serial, with_for_update=True)
            previous = state_of(token.rollout_state if token else None)
            facts = Facts(reason=reason, at=now.isoformat())
            try:
                moves = retirement(previous, token.info if token else {}, facts, delete=delete)
            except ImpossibleTransition as refused:
                acknowledge_impossible(job.serial, refused)
                return False, []
            assert token is not None
            assert previous is not None
            shown = previous  # the state the next event tells
            for moved in moves:
                assert moved.emit is not None
                if moved.state is not None:  # revoked
                    shown = moved.state
                    token.rollout_state = moved.state.value
                    token.info = moved.info
                    token.updated_at = now
                    await session.execute(
                        update(IssuedCertificate)
                        .where(
                            IssuedCertificate.token_serial == job.serial,
                            IssuedCertificate.revoked_at.is_(None),
                        )
                        .values(revoked_at=now, revocation_reason=reason)
                    )
                    revoked = True
                data = token_event_data(
                    token, shown, moved.info, previous=previous.value, admin=job.admin
                )
                rows.append(self._event(moved.emit, job.serial, data, cid))
            if delete:
                # A held request is withdrawn; a deleted token's key and PKCS#12 go with it.
                await session.execute(
                    update(CARequest)
                    .where(CARequest.token_serial == job.serial, CARequest.status == "pending")
                    .values(status="withdrawn", updated_at=now)
                )
                await session.delete(token)
                await session.execute(sql_delete(TokenKey).where(TokenKey.serial == job.serial))
            await insert_outbox(session, rows)
        log.info("token retired", extra={"serial": job.serial, "deleted": delete})
        return revoked, rows

    def _event(self, kind: EventType, serial: str, data: dict[str, Any], cid: str) -> OutboxMessage:
        event = new_event(kind, SOURCE, serial, data, cid)
        return outbox_message(EVENTS_EXCHANGE, event_routing_key(event.type), event, self._lease)
