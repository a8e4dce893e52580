"""The ca_worker's job handlers: sign a submitted CSR, and route each job type to its handler."""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence

from sqlalchemy import select

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
from services.ca_worker.connectors.local import LocalConnector
from services.ca_worker.jobs import acknowledge_impossible, read_job
from services.ca_worker.polling import poll_outbox
from services.ca_worker.precheck import precheck
from services.ca_worker.registry import ConnectorRegistry
from services.ca_worker.tokenbook import Outcome, TokenBook, ensure_awaiting_outcome
from services.ca_worker.tokenkeys import FreshKey, TokenKeys
from shared.ca_jobs import Poll
from shared.db.models import OutboxMessage, User, utcnow
from shared.db.session import Database
from shared.identity import OWNER_ATTRIBUTES, Owner, owner_of_job
from shared.jobs import SignRequest
from shared.messaging.base import Message, Reject, RetryLater
from shared.messaging.outbox import OutboxRelay
from shared.token_states import ImpossibleTransition

log = logging.getLogger(__name__)

Handler = Callable[[Message], Awaitable[None]]


def new_request_id() -> str:
    """An id for a request in the CA request store."""
    return secrets.token_hex(8)


async def owner_of(db: Database, username: str, realm: str, enrolled: str) -> Owner:
    """Who a certificate is for, as the user store says now; *enrolled* is ``enrolled_by``."""
    async with db.read() as session:
        row = (
            await session.execute(
                select(User.email, User.givenname, User.surname).where(
                    User.username == username, User.realm == realm
                )
            )
        ).first()
    attributes = dict(zip(OWNER_ATTRIBUTES, row or (), strict=False))
    return owner_of_job(username, realm, attributes, enrolled)


async def job_owner(db: Database, job: SignRequest) -> Owner:
    """The owner the api decided for (carried in the job), or as the user store says."""
    enrolled = str(job.info.get("enrolled_by", ""))
    if job.owner is None:  # a job of an older release
        return await owner_of(db, job.username, job.realm, enrolled)
    return owner_of_job(job.username, job.realm, job.owner, enrolled)


def for_job(template: Template, job: SignRequest) -> Template:
    """*template* with the subject components a genkey job's policy adds."""
    if job.keygen is None or not job.keygen.subject_components:
        return template
    components = tuple(
        dict.fromkeys((*template.subject_components, *job.keygen.subject_components))
    )
    return dataclasses.replace(template, subject_components=components)


class SignHandler:
    """Handles ``csr.sign``: idempotent, so a redelivered job never records twice."""

    def __init__(
        self,
        book: TokenBook,
        connectors: ConnectorRegistry,
        relay: OutboxRelay,
        db: Database,
        poll_delays_ms: Sequence[int],
        on_local_issue: Callable[[str], None],
        keys: TokenKeys,
    ) -> None:
        self._book = book
        self._keys = keys
        self._connectors = connectors
        self._relay = relay
        self._db = db
        self._poll_delays = tuple(poll_delays_ms)
        self._on_local_issue = on_local_issue

    async def __call__(self, message: Message) -> None:
        """Sign the job's CSR (or hold it for approval), record the outcome, publish the event."""
        job, cid = read_job(message, SignRequest)
        if job.keygen is not None or message.redelivered or message.attempt > 1:
            # No key is made, and the CA is not asked, for a token that has moved on. A job
            # delivered again may be handled already: a worker that recorded the outcome may
            # have lost its ack (killed; or RabbitMQ dropped it), and an external CA would issue
            # a second certificate. A first csr.sign delivery skips the read.
            try:
                await ensure_awaiting_outcome(self._db, job.serial)
            except ImpossibleTransition as refusal:
                acknowledge_impossible(job.serial, refusal)
                return

        refused: Denied | None = None
        fresh: FreshKey | None = None
        owner = await job_owner(self._db, job)
        if job.keygen is not None:
            made = await self._keys.csr_for(job, owner)
            if isinstance(made, Denied):
                refused = made
            else:
                job, fresh = made

        result: SignResult
        held: dict[str, object] | None = None
        followups: tuple[OutboxMessage, ...] = ()
        connector: Connector | None = None
        try:
            connector = await self._connectors.get(job.ca)
            template = for_job(await self._connectors.template(job.ca, job.template), job)
        except PermanentCAError as exc:
            result = exc.denied()
        else:
            if refused is not None:
                result = refused
            elif template.needs_approval:
                # Held for a CA manager: nothing is sent to the CA until approved.
                result = precheck(job.request, template, owner) or Pending(new_request_id())
                if isinstance(result, Pending):
                    held = self._held(job, result.request_id, "approval", "")
            else:
                result = await self._sign(connector, job, template, owner, message)
                if isinstance(result, Pending):
                    remote_id = result.request_id
                    result = Pending(new_request_id())
                    held = self._held(job, result.request_id, "ca", remote_id)
                    if connector.polls:
                        poll = Poll(result.request_id, job.ca, 0)
                        followups = (poll_outbox(poll, self._poll_delays, cid, self._relay.lease),)
        key = None
        if fresh is not None:  # a genkey job refused before its key was made stores none
            chain = connector.chain() if isinstance(result, Issued) and connector else ()
            key = await self._keys.key_row(job, result, chain, fresh)
        try:
            rows = await self._book.record(Outcome(job, result, cid, held, followups, key))
        except ImpossibleTransition as refusal:
            # A redelivered job: the outcome is on record already, this signature unused.
            acknowledge_impossible(job.serial, refusal)
            return
        log.info("outcome recorded", extra={"serial": job.serial, "result": type(result).__name__})
        await self._relay.send(rows)
        if isinstance(connector, LocalConnector):
            # A CA created while this worker runs gets its CRL and OCSP responder now.
            self._on_local_issue(job.ca)

    def _held(
        self, job: SignRequest, request_id: str, kind: str, remote_id: str
    ) -> dict[str, object]:
        now = utcnow()
        return {
            "id": request_id,
            "ca": job.ca,
            "token_serial": job.serial,
            "template": job.template,
            "csr": job.request,
            "kind": kind,
            "remote_id": remote_id,
            "status": "pending",
            "username": job.username,
            "realm": job.realm,
            "requester": str(job.info.get("enrolled_by", "")),
            "decision": None,
            "decided_by": None,
            "decided_at": None,
            "reason": "",
            "created_at": now,
            "updated_at": now,
        }

    async def _sign(
        self,
        connector: Connector,
        job: SignRequest,
        template: Template,
        owner: Owner,
        message: Message,
    ) -> SignResult:
        try:
            return await connector.sign(job.request, template, owner)
        except TemporaryCAError as exc:
            log.warning(
                "CA temporarily unavailable; will retry",
                extra={"serial": job.serial, "attempt": message.attempt, "error": str(exc)},
            )
            raise RetryLater(str(exc)) from exc
        except PermanentCAError as exc:
            return exc.denied()


class JobRouter:
    """Hands each job on the ca_worker's queue to the handler of its type."""

    def __init__(self, handlers: Mapping[str, Handler]) -> None:
        self._handlers = dict(handlers)

    async def __call__(self, message: Message) -> None:
        """Dispatch by the message's type; a type nobody handles is parked."""
        handler = self._handlers.get(message.type)
        if handler is None:
            raise Reject(f"no handler for job type {message.type!r}")
        await handler(message)
