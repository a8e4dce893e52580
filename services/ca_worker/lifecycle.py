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
from services.ca_worker.jobs import read_job
from services.ca_worker.outcomes import issued_info
from services.ca_worker.polling import poll_message, poll_outbox
from services.ca_worker.precheck import postcheck
from services.ca_worker.registry import ConnectorRegistry
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
from shared.domain import EventType, RolloutState
from shared.events import new_event
from shared.messaging.base import Broker, Message, Reject, RetryLater
from shared.messaging.outbox import OutboxRelay, insert_outbox, outbox_message
from shared.messaging.topology import EVENTS_EXCHANGE, event_routing_key
from shared.pki import pem_certificate_id
from shared.token_events import CA_DETAIL, token_event_data

log = logging.getLogger(__name__)

SOURCE = "certtoken/ca_worker"
DELETE_REASON = "cessationOfOperation"

Refresh = Callable[[str], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class _Settlement:
    """How a held request ends: the token's new state and the request's new status."""

    state: RolloutState
    status: str
    reason: str = ""
    issued: Issued | None = None
    detail: str = ""  # the remote CA's own words (admins only)


def settlement(result: SignResult) -> _Settlement | None:
    """The end of a held request for a CA answer; None while it stays pending."""
    if isinstance(result, Issued):
        return _Settlement(RolloutState.ENROLLED, "issued", issued=result)
    if isinstance(result, Denied):
        # A pending token only ever ends enrolled or denied (DESIGN 6), whoever said no.
        return _Settlement(
            RolloutState.DENIED, "denied", reason=result.reason, detail=result.detail
        )
    return None


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
        end = _Settlement(RolloutState.DENIED, "denied", reason=job.reason or "denied")
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
            await self._settle(
                request.id,
                _Settlement(RolloutState.DENIED, "denied", str(exc), detail=exc.detail),
                "",
                cid,
            )
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
            changed = await session.execute(
                update(CARequest)
                .where(CARequest.id == request_id, CARequest.status == "pending")
                .values(status=end.status, reason=end.reason, updated_at=now)
                .returning(CARequest.token_serial, CARequest.ca)
            )
            found = changed.first()
            if found is None:
                log.info("request already settled", extra={"request_id": request_id})
                return
            serial, ca = found
            token = await session.get(Token, serial, with_for_update=True)
            if token is None or token.rollout_state != RolloutState.PENDING:
                return
            info = dict(token.info)
            certificate = ""
            if end.issued is not None:
                info = issued_info(info, end.issued)
                certificate = end.issued.certificate
                token.certificate_id = pem_certificate_id(certificate)
                session.add(_issued_row(ca, serial, end.issued, now))
            elif end.reason:
                info["reason"] = end.reason
                if end.detail:
                    info[CA_DETAIL] = end.detail
            token.rollout_state = end.state.value
            token.info = info
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
                end.state,
                info,
                certificate=certificate,
                previous=RolloutState.PENDING.value,
                admin=admin,
            )
            rows.append(self._event(EventType.TOKEN_UPDATE, serial, data, cid))
            await insert_outbox(session, rows)
        log.info("held request settled", extra={"serial": serial, "rollout_state": end.state.value})
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
        if token is None:
            log.info("token already gone; job acknowledged", extra={"serial": job.serial})
            return
        reason = job.reason or ("unspecified" if not delete else DELETE_REASON)
        connector: Connector | None = None
        must_revoke = token.rollout_state == RolloutState.ENROLLED and issued is not None
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
            if token is None:
                return False, []
            previous = token.rollout_state
            info = dict(token.info)
            if previous == RolloutState.ENROLLED:
                info.update(revoked_at=now.isoformat(), revocation_reason=reason)
                token.rollout_state = RolloutState.REVOKED.value
                token.info = info
                token.updated_at = now
                await session.execute(
                    update(IssuedCertificate)
                    .where(
                        IssuedCertificate.token_serial == job.serial,
                        IssuedCertificate.revoked_at.is_(None),
                    )
                    .values(revoked_at=now, revocation_reason=reason)
                )
                data = token_event_data(
                    token, RolloutState.REVOKED, info, previous=previous, admin=job.admin
                )
                rows.append(self._event(EventType.TOKEN_REVOKE, job.serial, data, cid))
                revoked = True
            elif not delete:
                log.info("token not enrolled; nothing to revoke", extra={"serial": job.serial})
                return False, []
            if delete:
                if previous == RolloutState.PENDING:
                    await session.execute(
                        update(CARequest)
                        .where(CARequest.token_serial == job.serial, CARequest.status == "pending")
                        .values(status="withdrawn", updated_at=now)
                    )
                state = RolloutState(token.rollout_state)
                data = token_event_data(token, state, info, previous=previous, admin=job.admin)
                rows.append(self._event(EventType.TOKEN_DELETE, job.serial, data, cid))
                await session.delete(token)
                # A deleted token's generated key and PKCS#12 go with it.
                await session.execute(sql_delete(TokenKey).where(TokenKey.serial == job.serial))
            await insert_outbox(session, rows)
        log.info("token retired", extra={"serial": job.serial, "deleted": delete})
        return revoked, rows

    def _event(self, kind: EventType, serial: str, data: dict[str, Any], cid: str) -> OutboxMessage:
        event = new_event(kind, SOURCE, serial, data, cid)
        return outbox_message(EVENTS_EXCHANGE, event_routing_key(event.type), event, self._lease)


def _issued_row(ca: str, serial: str, issued: Issued, now: Any) -> IssuedCertificate:
    return IssuedCertificate(
        ca=ca,
        serial_number=issued.serial_number,
        token_serial=serial,
        subject=issued.subject,
        not_before=issued.not_before,
        not_after=issued.not_after,
        certificate=issued.certificate,
        created_at=now,
    )
