"""Turns events into mails: matching handlers, rendered mail, one claimed delivery each.

Exactly-once, as far as SMTP allows. For each (event id, handler id, recipient):

1. a claim (row ``sending``, a token and a lease) is committed before any SMTP traffic;
2. the mail is sent within the SMTP server's timeout, which is shorter than the lease;
3. the outcome (``sent``, ``retrying``, ``failed``) is committed;
4. the broker message is acknowledged only after every delivery of the event is recorded.

A redelivered event skips what is sent or parked; a live claim makes it wait; a claim whose
lease ran out (its consumer died) is taken over. The send always ends before the lease does.

The one remaining window for a duplicate is between the SMTP server's ``250`` to the end of
DATA and the commit of ``sent`` in step 3 (marked in ``_deliver``): reading the reply, then
one group commit - about a millisecond on SQLite, a network round trip more on PostgreSQL;
up to a batch more under load. A crash (or a failed commit) there leaves the claim, and the
mail is sent again once its lease runs out. Every copy carries the same Message-ID, so a
duplicate is recognisable. SMTP has the same window of its own, between the server's commit
and its ``250`` (RFC 1047), which no client can close.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from prometheus_client import Counter

from services.notifier.claims import after_failure
from services.notifier.config_cache import ConfigCache
from services.notifier.deliveries import (
    Busy,
    Claimed,
    ClaimRequest,
    DeliveryBook,
    Done,
    Outcome,
)
from services.notifier.transport import Transports
from shared.db.models import MailDelivery, utcnow
from shared.db.session import Database
from shared.events import CloudEvent, MalformedEvent, decode
from shared.logs import correlation_id
from shared.messaging.base import Message, Reject, RetryLater
from shared.notification.context import load_context
from shared.notification.planning import Mail, plan
from shared.notification.smtp import MailError, SmtpConfig, TemporaryMailError
from shared.notification.vocabulary import EVENT_NAMES, DeliveryStatus

log = logging.getLogger(__name__)

DELIVERIES = Counter("certtoken_mail_deliveries_total", "Mail deliveries by outcome", ["status"])
# How long writing a mail to the outbox folder may take.
OUTBOX_TIMEOUT = 10.0
_FIRST_RECHECK, _LAST_RECHECK = 0.05, 1.0


@dataclass(frozen=True)
class Target:
    """The event a delivery belongs to."""

    event_id: str
    event_type: str
    serial: str


@dataclass(frozen=True)
class Servers:
    """SMTP servers by identifier; those whose password cannot be unsealed, with why."""

    usable: Mapping[str, SmtpConfig]
    broken: Mapping[str, str]


class Mailer:
    """Handles ``token.*`` events and administrators' ``mail.retry`` jobs."""

    def __init__(
        self,
        db: Database,
        book: DeliveryBook,
        transports: Transports,
        config: ConfigCache,
        *,
        max_attempts: int,
        claim_margin: float,
        default_sender: str,
    ) -> None:
        self._db = db
        self._book = book
        self._transports = transports
        self._config = config
        self._max_attempts = max_attempts
        self._margin = claim_margin
        self._sender = default_sender

    async def on_event(self, message: Message) -> None:
        """Send the mails an event calls for; RetryLater when some were deferred."""
        event = _decode(message)
        correlation_id.set(event.correlation_id or message.correlation_id)
        log.info(
            "event received",
            extra={
                "event_id": event.id,
                "event_type": event.type,
                "serial": event.subject,
                "rollout_state": event.data.get("rollout_state"),
                "attempt": message.attempt,
            },
        )
        if event.type not in EVENT_NAMES:
            return
        config = await self._config.fresh()
        handlers = config.handlers.get(event.type, [])
        if not any(h.active for h in handlers):
            return
        async with self._db.read() as session:
            context = await load_context(session, event, handlers, self._sender, config.senders)
        mails = plan(handlers, context).mails
        servers = Servers(config.servers, config.broken)
        target = Target(event.id, event.type, context.serial)
        deferred: list[str] = []
        for mail in mails:
            # A redelivered event finds its sent and parked deliveries DONE at the claim.
            error = await self._deliver(target, mail, servers, message.attempt)
            if error:
                deferred.append(error)
        if deferred:
            raise RetryLater(f"{len(deferred)} mail(s) deferred: {deferred[0]}")

    async def on_retry(self, message: Message) -> None:
        """An administrator's retry of a parked delivery: send the stored mail again."""
        job = _decode(message)
        correlation_id.set(job.correlation_id or message.correlation_id)
        try:
            delivery_id = int(job.data["delivery_id"])
        except (KeyError, TypeError, ValueError):
            raise Reject("mail.retry job without a delivery_id") from None
        async with self._db.read() as session:
            row = await session.get(MailDelivery, delivery_id)
            if row is None or row.status == DeliveryStatus.SENT:
                log.info("nothing to retry", extra={"delivery_id": delivery_id})
                return
            config = await self._config.current(session)
        servers = Servers(config.servers, config.broken)
        mail = Mail(
            handler_id=row.handler_id,
            handler_name=row.handler_name,
            recipient=row.recipient,
            address=row.address,
            smtpserver=row.smtpserver,
            subject=row.subject,
            body="",
            mimetype="",
            message=row.message,
            problem="" if row.address and row.message else (row.error or "nothing to send"),
        )
        target = Target(row.event_id, row.event_type, row.serial)
        error = await self._deliver(target, mail, servers, message.attempt, admin_retry=True)
        if error:
            raise RetryLater(error)

    async def _deliver(
        self,
        target: Target,
        mail: Mail,
        servers: Servers,
        attempt: int,
        *,
        admin_retry: bool = False,
    ) -> str | None:
        """Claim, send, record; the temporary error when the mail is to be retried."""
        config = servers.usable.get(mail.smtpserver)
        timeout = config.timeout if config else OUTBOX_TIMEOUT
        token = uuid.uuid4().hex
        pause = _FIRST_RECHECK
        while True:
            lease = utcnow() + timedelta(seconds=timeout + self._margin)
            claimed = await self._book.claim(
                ClaimRequest(
                    target.event_id,
                    target.event_type,
                    target.serial,
                    mail,
                    token,
                    lease,
                    admin_retry=admin_retry,
                )
            )
            if isinstance(claimed, Done):
                return None
            if isinstance(claimed, Claimed):
                break
            assert isinstance(claimed, Busy)
            # Held by another consumer (look again soon: it is likely done in milliseconds),
            # or by one that died (its lease bounds the wait).
            remaining = (claimed.until - utcnow()).total_seconds()
            await asyncio.sleep(max(min(remaining, pause), 0.01))
            pause = min(pause * 2, _LAST_RECHECK)
        delivery = claimed.delivery_id
        problem = mail.problem or _server_problem(mail.smtpserver, config, servers)
        if problem:
            await self._finish(delivery, token, DeliveryStatus.FAILED, problem, permanent=True)
            return None
        # The send must end while the claim is ours, with time left to record the outcome,
        # even when the claim's commit was slow: no other consumer may take it meanwhile.
        budget = min(timeout, (lease - utcnow()).total_seconds() - self._margin / 2)
        try:
            if budget <= 0:
                raise TemporaryMailError("the claim ran short before sending")
            async with asyncio.timeout(budget):
                await self._transports.send(mail, config)
        except (MailError, TimeoutError) as exc:
            error = (
                exc
                if isinstance(exc, MailError)
                else TemporaryMailError(f"no answer within {budget:.3g} s")
            )
            last = attempt >= self._max_attempts
            status = after_failure(error, last_attempt=last)
            text = str(error)
            if last and not error.permanent:
                text = f"gave up after {attempt} attempt(s): {text}"
            await self._finish(delivery, token, status, text, permanent=error.permanent)
            return text if status is DeliveryStatus.RETRYING else None
        # The window for a duplicate: the server has the mail; a crash before the next
        # commit leaves the claim, to be taken over (and the mail sent again) after its lease.
        await self._finish(delivery, token, DeliveryStatus.SENT)
        return None

    async def _finish(
        self,
        delivery: int,
        token: str,
        status: DeliveryStatus,
        error: str = "",
        *,
        permanent: bool = False,
    ) -> None:
        await self._book.record(Outcome(delivery, token, status, error, permanent))
        DELIVERIES.labels(status.value).inc()
        log.log(
            logging.INFO if status is DeliveryStatus.SENT else logging.WARNING,
            "mail %s",
            status.value,
            extra={"delivery_id": delivery, "error": error} if error else {"delivery_id": delivery},
        )


def _server_problem(name: str, config: SmtpConfig | None, servers: Servers) -> str:
    if not name or config is not None:
        return ""
    return servers.broken.get(name, f"unknown SMTP server {name!r}")


def _decode(message: Message) -> CloudEvent:
    try:
        return decode(message.body)
    except MalformedEvent as exc:
        raise Reject(str(exc)) from exc
