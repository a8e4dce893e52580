"""The expiry scan: notices for certificates nearing their end, each sent once, and CA gauges.

Every ca_worker scans; the ``expiry_notice`` row of a (certificate, threshold) commits with the
outbox row of its event, and the table's unique key lets exactly one scanner insert it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from prometheus_client import Gauge
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import CAConnector, ExpiryNotice, OutboxMessage, Token, utcnow
from shared.db.session import Database
from shared.domain import EventType, RolloutState
from shared.events import CloudEvent, new_event
from shared.expiry import (
    CA,
    DAY,
    TOKEN,
    ca_notice,
    certificate_notice,
    due,
    parse_time,
    thresholds,
)
from shared.messaging.outbox import OutboxRelay, insert_outbox, outbox_message
from shared.messaging.topology import EVENTS_EXCHANGE, event_routing_key
from shared.notification.context import load_handlers
from shared.token_states import DISABLED

log = logging.getLogger(__name__)

SOURCE = "certtoken/ca_worker"
CA_DAYS_LEFT = Gauge(
    "certtoken_ca_certificate_days_left",
    "Days until the certificate of a CA connector expires (negative once expired)",
    ["ca"],
)
# Notices per write transaction: a first scan of many tokens does not hold the lock long.
_CHUNK = 200

Key = tuple[str, str, str, int]


@dataclass(frozen=True)
class Notice:
    """A notice due: what identifies it once, and its event."""

    kind: str
    subject: str
    certificate: str
    threshold: int
    not_after: datetime
    event: CloudEvent

    @property
    def key(self) -> Key:
        """The unique key of its ``expiry_notice`` row."""
        return (self.kind, self.subject, self.certificate, self.threshold)


class ExpiryScanner:
    """Finds certificates of tokens and CAs within a threshold and emits each notice once."""

    def __init__(
        self,
        db: Database,
        relay: OutboxRelay,
        *,
        period_seconds: float,
        ca_warning_days: int,
    ) -> None:
        self._db = db
        self._relay = relay
        self._period = period_seconds
        self._ca_warning_days = ca_warning_days
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._gauged: set[str] = set()

    def start(self) -> None:
        """Scan now and then every period, in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="expiry-scan")

    async def stop(self) -> None:
        """Stop scanning (a scan in flight is cancelled; its transaction rolls back)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def scan(self, now: datetime | None = None) -> int:
        """One scan: update the CA gauges and emit the notices due; how many this scan sent."""
        async with self._lock:
            now = now or utcnow()
            async with self._db.read() as session:
                handlers = await load_handlers(session)
                known, expired = await _known(session, now)
                ca_wanted = thresholds(
                    handlers, EventType.CA_EXPIRING, always=(self._ca_warning_days,), default=None
                )
                notices = await self._ca_notices(session, ca_wanted, known, now)
                wanted = thresholds(handlers, EventType.CERTIFICATE_EXPIRING)
                if wanted:
                    notices += await _token_notices(session, wanted, known, now)
            # One order for every scanner: on PostgreSQL, racing inserts then wait on each other
            # in turn instead of deadlocking.
            notices.sort(key=lambda notice: notice.key)
            sent = 0
            for start in range(0, len(notices), _CHUNK):
                sent += await self._record(notices[start : start + _CHUNK])
            if expired:
                # Past their certificate's end, these notices can never be due again.
                async with self._db.write() as session:
                    await session.execute(delete(ExpiryNotice).where(ExpiryNotice.not_after < now))
            if sent:
                log.info("expiry notices sent", extra={"count": sent})
            return sent

    async def _ca_notices(
        self, session: AsyncSession, wanted: tuple[int, ...], known: set[Key], now: datetime
    ) -> list[Notice]:
        rows = await session.execute(select(CAConnector.name, CAConnector.cacert))
        notices: list[Notice] = []
        seen: set[str] = set()
        for name, pem in rows:
            cert = _certificate(pem)
            if cert is None:
                continue
            seen.add(name)
            not_after = cert.not_valid_after_utc
            CA_DAYS_LEFT.labels(ca=name).set(round((not_after - now) / DAY, 3))
            fingerprint = cert.fingerprint(hashes.SHA256()).hex()
            for threshold in due(not_after, now, wanted):
                if (CA, name, fingerprint, threshold) in known:
                    continue
                event = new_event(
                    EventType.CA_EXPIRING,
                    SOURCE,
                    f"ca:{name}",
                    ca_notice(name, cert, threshold, now),
                )
                notices.append(Notice(CA, name, fingerprint, threshold, not_after, event))
        for gone in self._gauged - seen:
            with contextlib.suppress(KeyError):
                CA_DAYS_LEFT.remove(gone)
        self._gauged = seen
        return notices

    async def _record(self, notices: Sequence[Notice]) -> int:
        """Insert the notices not yet recorded, each with its event's outbox row; publish them."""
        rows: list[OutboxMessage] = []
        async with self._db.write() as session:
            for notice in notices:
                statement = (
                    self._db.upsert(ExpiryNotice)
                    .values(
                        kind=notice.kind,
                        subject=notice.subject,
                        certificate=notice.certificate,
                        threshold_days=notice.threshold,
                        not_after=notice.not_after,
                        event_id=notice.event.id,
                        created_at=utcnow(),
                    )
                    .on_conflict_do_nothing()
                    .returning(ExpiryNotice.id)
                )
                # No row back: another scanner recorded (and sent) this notice first.
                if (await session.execute(statement)).first() is not None:
                    event = notice.event
                    rows.append(
                        outbox_message(
                            EVENTS_EXCHANGE, event_routing_key(event.type), event, self._relay.lease
                        )
                    )
            await insert_outbox(session, rows)
        if rows:
            await self._relay.send(rows)
        return len(rows)

    async def _loop(self) -> None:
        while True:
            try:
                await self.scan()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("expiry scan failed", extra={"error": repr(exc)})
            await asyncio.sleep(self._period)


async def _known(session: AsyncSession, now: datetime) -> tuple[set[Key], bool]:
    """The notices already sent for certificates still valid, and whether expired ones remain."""
    rows = await session.execute(
        select(
            ExpiryNotice.kind,
            ExpiryNotice.subject,
            ExpiryNotice.certificate,
            ExpiryNotice.threshold_days,
            ExpiryNotice.not_after,
        )
    )
    known: set[Key] = set()
    expired = False
    for kind, subject, certificate, threshold, not_after in rows:
        if not_after < now:
            expired = True
        else:
            known.add((kind, subject, certificate, threshold))
    return known, expired


async def _token_notices(
    session: AsyncSession, wanted: tuple[int, ...], known: set[Key], now: datetime
) -> list[Notice]:
    """Notices due for enrolled, active tokens whose certificate ends within a threshold."""
    # ISO 8601 texts in UTC sort as times: a coarse filter in SQL, a day wider than needed.
    horizon = (now + (max(wanted) + 1) * DAY).isoformat()
    not_after_text = Token.info["certificate_not_after"].as_string()
    rows = await session.execute(
        select(
            Token.serial,
            Token.tokentype,
            Token.username,
            Token.realm,
            Token.ca,
            Token.template,
            Token.certificate_id,
            Token.info,
        ).where(
            Token.rollout_state == RolloutState.ENROLLED.value,
            not_after_text.is_not(None),
            not_after_text <= horizon,
        )
    )
    notices: list[Notice] = []
    for serial, tokentype, username, realm, ca, template, certificate_id, stored in rows:
        token = _Token(serial, tokentype, username, realm, ca, template)
        info = dict(stored or {})
        not_after = parse_time(info.get("certificate_not_after"))
        certificate = certificate_id or str(info.get("certificate_serial") or "")
        if not_after is None or not certificate or info.get(DISABLED):
            continue
        for threshold in due(not_after, now, wanted):
            if (TOKEN, token.serial, certificate, threshold) in known:
                continue
            event = new_event(
                EventType.CERTIFICATE_EXPIRING,
                SOURCE,
                token.serial,
                certificate_notice(token, info, not_after, threshold, now),
            )
            notices.append(Notice(TOKEN, token.serial, certificate, threshold, not_after, event))
    return notices


@dataclass(frozen=True)
class _Token:
    """What an event says of a token."""

    serial: str
    tokentype: str
    username: str
    realm: str
    ca: str
    template: str


def _certificate(pem: str) -> x509.Certificate | None:
    if not pem:
        return None
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        return None
