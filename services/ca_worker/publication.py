"""What local CAs publish: CRLs and delegated OCSP responder certificates, kept fresh."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.ca_worker.connectors.local import LocalConnector
from services.ca_worker.registry import ConnectorRegistry
from shared.ca_keyids import subject_key_id
from shared.db.models import CAGeneration, CAPublication, IssuedCertificate, utcnow
from shared.db.session import Database
from shared.pki import cert_pem
from shared.security import SecretBox

log = logging.getLogger(__name__)

CRL_LIFETIME = timedelta(days=1)
RESPONDER_LIFETIME = timedelta(days=30)
CHECK_SECONDS = 300.0
# A generation without certificates is retired only after this: one being issued with its key
# as the rollover lands is recorded by then.
RETIRE_GRACE = timedelta(minutes=10)
_ATTEMPTS = 3


@dataclass(frozen=True)
class Revoked:
    """One revoked certificate as a CRL lists it."""

    serial_number: str  # hex
    revoked_at: datetime
    reason: str


def reason_flag(reason: str) -> x509.ReasonFlags | None:
    """The CRL reason code for a reason name; None for unspecified or unknown (RFC 5280 5.3.1)."""
    for flag in x509.ReasonFlags:
        if flag.value == reason and flag is not x509.ReasonFlags.unspecified:
            return flag
    return None


def crl_builder(
    revoked: list[Revoked], number: int, this_update: datetime, next_update: datetime
) -> x509.CertificateRevocationListBuilder:
    """A CRL's content without issuer and signature: entries, number, validity."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for entry in revoked:
        item = (
            x509.RevokedCertificateBuilder()
            .serial_number(int(entry.serial_number, 16))
            .revocation_date(entry.revoked_at.replace(microsecond=0))
        )
        flag = reason_flag(entry.reason)
        if flag is not None:
            item = item.add_extension(x509.CRLReason(flag), critical=False)
        builder = builder.add_revoked_certificate(item.build())
    return builder


def needs_crl(row: CAPublication | None, latest_revocation: datetime | None, now: datetime) -> bool:
    """Whether the CRL must be rebuilt: missing, half-way to nextUpdate, or missing a revocation."""
    if row is None:
        return True
    if row.crl_next_update - now < CRL_LIFETIME / 2:
        return True
    return latest_revocation is not None and latest_revocation >= row.crl_this_update


def needs_responder(row: CAPublication | None, now: datetime) -> bool:
    """Whether the OCSP responder certificate must be renewed (missing or half-way expired)."""
    return row is None or row.ocsp_not_after - now < RESPONDER_LIFETIME / 2


class Publisher:
    """Rebuilds CRLs on revocation and before nextUpdate; renews OCSP responder certificates."""

    def __init__(
        self,
        db: Database,
        registry: ConnectorRegistry,
        box: SecretBox,
        check_seconds: float = CHECK_SECONDS,
    ) -> None:
        self._db = db
        self._registry = registry
        self._box = box
        self._check = check_seconds
        self._task: asyncio.Task[None] | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._known: set[tuple[str, int | None]] = set()
        self._earlier: dict[tuple[str, int], LocalConnector] = {}
        self._background: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Check every local CA every few minutes (the caller checks once at start)."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="ca-publication")

    async def stop(self) -> None:
        """Stop the periodic check and any refresh in flight."""
        tasks = [t for t in (self._task, *self._background) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None
        self._background.clear()
        for connector in self._earlier.values():
            with contextlib.suppress(Exception):
                await connector.close()
        self._earlier.clear()

    def ensure(self, ca: str) -> None:
        """Publish for *ca* soon if this worker has not yet for its generation (a CA created or
        rolled over while it runs)."""
        known = (ca, self._registry.loaded_generation(ca))
        if known in self._known:
            return
        self._known.add(known)
        task = asyncio.create_task(self._refresh_logged(known), name=f"publish {ca}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _refresh_logged(self, known: tuple[str, int | None]) -> None:
        ca = known[0]
        try:
            await self.refresh(ca)
        except Exception as exc:
            self._known.discard(known)
            log.warning("could not publish for CA", extra={"ca": ca, "error": repr(exc)})

    async def refresh_all(self) -> None:
        """Refresh what every local CA publishes; one CA's failure does not stop the others."""
        for name in await self._registry.local_names():
            self._known.add((name, self._registry.loaded_generation(name)))
            try:
                await self.refresh(name)
            except Exception as exc:
                log.warning("could not publish for CA", extra={"ca": name, "error": repr(exc)})

    async def refresh(self, ca: str) -> None:
        """Rebuild the CRL and responder of local CA *ca* when they are stale, and those of its
        earlier generations still answering for certificates; retire those with none left."""
        lock = self._locks.setdefault(ca, asyncio.Lock())
        async with lock:
            for _ in range(_ATTEMPTS):
                if await self._refresh_once(ca):
                    break
            else:
                log.warning("another worker kept publishing meanwhile", extra={"ca": ca})
            await self._refresh_earlier(ca)

    async def _refresh_once(self, ca: str) -> bool:
        """One read-build-write round; False when another writer published meanwhile."""
        connector = await self._registry.get(ca)
        if not isinstance(connector, LocalConnector):
            return True
        now = utcnow()
        # Rows recorded before key ids were kept are the first generation's, and a CA with
        # earlier generations had its rows' key ids filled in by the rollover.
        issued_here = or_(
            IssuedCertificate.issuer_key_id == subject_key_id(connector.certificate),
            IssuedCertificate.issuer_key_id.is_(None),
        )
        async with self._db.read() as session:
            row = await session.get(CAPublication, ca)
            if row is not None and row.generation > connector.generation:
                return True  # rolled over a moment ago; this worker loads the new key soon
            latest = await session.scalar(
                select(func.max(IssuedCertificate.revoked_at)).where(IssuedCertificate.ca == ca)
            )
            crl_due = needs_crl(row, latest, now)
            if row is not None and row.generation != connector.generation:
                crl_due = True  # the publication is the previous key's: sign afresh
            revoked = await _revoked(session, ca, issued_here) if crl_due else []
        responder_due = needs_responder(row, now) or (
            row is not None and row.generation != connector.generation
        )
        if not crl_due and not responder_due:
            return True
        number = (row.crl_number if row else 0) + (1 if crl_due else 0)
        crl, responder = await asyncio.to_thread(
            self._build, connector, revoked, number, now, crl_due, responder_due
        )
        async with self._db.write() as session:
            current = await session.get(CAPublication, ca, with_for_update=True)
            if (current.crl_number if current else 0) != (row.crl_number if row else 0):
                return False
            if current is not None and current.generation > connector.generation:
                return True
            if current is None:
                assert crl is not None
                assert responder is not None
                current = CAPublication(ca=ca, crl_number=number)
                session.add(current)
            if crl is not None:
                current.crl_number = number
                current.crl = crl
                current.crl_this_update = now
                current.crl_next_update = now + CRL_LIFETIME
            if responder is not None:
                current.ocsp_cert, current.ocsp_key, current.ocsp_not_after = responder
            current.generation = connector.generation
            current.updated_at = now
        log.info("CA publication refreshed", extra={"ca": ca, "crl_number": number})
        return True

    async def _refresh_earlier(self, ca: str) -> None:
        """Publish for, or retire, each earlier generation of *ca* not yet retired."""
        async with self._db.read() as session:
            rows = (
                await session.scalars(
                    select(CAGeneration).where(
                        CAGeneration.ca == ca, CAGeneration.retired_at.is_(None)
                    )
                )
            ).all()
        for row in rows:
            try:
                await self._refresh_generation(row)
            except Exception as exc:
                log.warning(
                    "could not publish for an earlier CA generation",
                    extra={"ca": ca, "generation": row.generation, "error": repr(exc)},
                )

    async def _refresh_generation(self, row: CAGeneration) -> None:
        """One earlier generation: retired when none of its certificates is unexpired."""
        now = utcnow()
        ca, generation = row.ca, row.generation
        issued_here = IssuedCertificate.issuer_key_id == row.key_id
        async with self._db.read() as session:
            last = await session.scalar(
                select(func.max(IssuedCertificate.not_after)).where(
                    IssuedCertificate.ca == ca, issued_here
                )
            )
            latest = await session.scalar(
                select(func.max(IssuedCertificate.revoked_at)).where(
                    IssuedCertificate.ca == ca, issued_here
                )
            )
            crl_due = (
                row.crl is None
                or row.crl_next_update is None
                or row.crl_this_update is None
                or row.crl_next_update - now < CRL_LIFETIME / 2
                or (latest is not None and latest >= row.crl_this_update)
            )
            revoked = await _revoked(session, ca, issued_here) if crl_due else []
        if (last is None or last <= now) and now - row.superseded_at > RETIRE_GRACE:
            await self._retire(row, now)
            return
        responder_due = row.ocsp_not_after is None or (
            row.ocsp_not_after - now < RESPONDER_LIFETIME / 2
        )
        if not crl_due and not responder_due:
            return
        connector = self._earlier.get((ca, generation))
        if connector is None:
            connector = await asyncio.to_thread(self._registry.load_local, ca, row.options)
            self._earlier[(ca, generation)] = connector
        number = row.crl_number + (1 if crl_due else 0)
        crl, responder = await asyncio.to_thread(
            self._build, connector, revoked, number, now, crl_due, responder_due
        )
        async with self._db.write() as session:
            current = await session.get(CAGeneration, row.id, with_for_update=True)
            if current is None or current.crl_number != row.crl_number:
                return  # another worker published meanwhile
            if crl is not None:
                current.crl_number = number
                current.crl = crl
                current.crl_this_update = now
                current.crl_next_update = now + CRL_LIFETIME
            if responder is not None:
                current.ocsp_cert, current.ocsp_key, current.ocsp_not_after = responder
        log.info(
            "CA publication refreshed",
            extra={"ca": ca, "generation": generation, "crl_number": number},
        )

    async def _retire(self, row: CAGeneration, now: datetime) -> None:
        """No certificate of this generation is unexpired: no more CRLs or OCSP for it."""
        async with self._db.write() as session:
            current = await session.get(CAGeneration, row.id)
            if current is not None and current.retired_at is None:
                current.retired_at = now
        connector = self._earlier.pop((row.ca, row.generation), None)
        if connector is not None:
            await connector.close()
        log.info("CA generation retired", extra={"ca": row.ca, "generation": row.generation})

    def _build(
        self,
        connector: LocalConnector,
        revoked: list[Revoked],
        number: int,
        now: datetime,
        crl_due: bool,
        responder_due: bool,
    ) -> tuple[bytes | None, tuple[str, str, datetime] | None]:
        """Sign the CRL and issue a responder certificate, as due (in a thread)."""
        crl = None
        if crl_due:
            this_update = now.replace(microsecond=0)
            builder = crl_builder(revoked, number, this_update, this_update + CRL_LIFETIME)
            crl = connector.sign_crl(builder)
        responder = None
        if responder_due:
            key = ec.generate_private_key(ec.SECP256R1())
            cert = connector.issue_responder(
                key.public_key(), now - timedelta(minutes=5), now + RESPONDER_LIFETIME
            )
            key_pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            responder = (cert_pem(cert), self._box.seal(key_pem), cert.not_valid_after_utc)
        return crl, responder

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._check)
            try:
                await self.refresh_all()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("CA publication check failed", extra={"error": repr(exc)})


async def _revoked(
    session: AsyncSession, ca: str, issued_here: ColumnElement[bool]
) -> list[Revoked]:
    """The revoked certificates of *ca* that *issued_here* selects (one key's)."""
    result = await session.execute(
        select(
            IssuedCertificate.serial_number,
            IssuedCertificate.revoked_at,
            IssuedCertificate.revocation_reason,
        ).where(IssuedCertificate.ca == ca, IssuedCertificate.revoked_at.is_not(None), issued_here)
    )
    return [Revoked(s, at, r or "") for s, at, r in result if at is not None]
