"""Sending mail with aiosmtplib: SMTP server settings, pooled connections, failure kinds."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiosmtplib

from shared.db.models import SmtpServer
from shared.security import SecretBox

# A pooled connection idle for longer may have been closed by the server: open a new one.
IDLE_SECONDS = 20.0
_LOCAL_HOSTNAME = socket.gethostname() or "certtoken"


@dataclass(frozen=True)
class SmtpConfig:
    """An SMTP server as the sender needs it; the password in clear, never shown."""

    identifier: str
    server: str
    port: int
    sender: str
    implicit_tls: bool = False
    starttls: bool = False
    username: str = ""
    password: str = field(default="", repr=False)
    timeout: float = 10.0

    @property
    def fingerprint(self) -> str:
        """Changes whenever a setting does, so that pooled connections follow edits."""
        parts = (
            self.server,
            self.port,
            self.implicit_tls,
            self.starttls,
            self.username,
            self.password,
        )
        text = "\0".join(str(p) for p in (*parts, self.timeout))
        return hashlib.sha256(text.encode()).hexdigest()


# privacyIDEA's way to ask for implicit TLS: the server given as ``smtps://host[:port]``.
IMPLICIT_TLS_SCHEME = "smtps"
SCHEMES = ("smtp", IMPLICIT_TLS_SCHEME)


@dataclass(frozen=True)
class ServerAddress:
    """Where a stored ``server`` value says to connect."""

    host: str
    port: int | None
    implicit_tls: bool


def server_address(server: str) -> ServerAddress:
    """Split ``host`` or ``smtp[s]://host[:port]``; ValueError for a URL without a valid host."""
    scheme, sep, _ = server.partition("://")
    if not sep:
        return ServerAddress(server, None, False)
    if scheme.lower() not in SCHEMES:
        raise ValueError(f"the scheme must be one of {', '.join(SCHEMES)}")
    parts = urlsplit(server)
    if not parts.hostname or parts.username or parts.path or parts.query or parts.fragment:
        raise ValueError("must be a host, or smtp[s]://host[:port]")
    port = parts.port  # raises ValueError when out of range
    return ServerAddress(parts.hostname, port, scheme.lower() == IMPLICIT_TLS_SCHEME)


def smtp_config(row: SmtpServer, box: SecretBox) -> SmtpConfig:
    """A stored server with its password unsealed; an ``smtps://`` server means implicit TLS."""
    address = server_address(row.server)
    implicit_tls = row.implicit_tls or address.implicit_tls
    return SmtpConfig(
        identifier=row.identifier,
        server=address.host,
        port=address.port or row.port,
        sender=row.sender,
        implicit_tls=implicit_tls,
        starttls=row.starttls and not implicit_tls,
        username=row.username,
        password=box.open(row.password).decode() if row.password else "",
        timeout=float(row.timeout),
    )


class MailError(Exception):
    """Sending failed; ``permanent`` says whether trying again can help."""

    permanent = False


class TemporaryMailError(MailError):
    """Connection refused, timeout, 4xx: try again later."""


class PermanentMailError(MailError):
    """5xx (e.g. recipient refused), refused TLS certificate, missing capability."""

    permanent = True


def classify(exc: BaseException) -> MailError:
    """What a failure of aiosmtplib (or the socket under it) means for a retry."""
    if isinstance(exc, MailError):
        return exc
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        text = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        if codes and all(500 <= code < 600 for code in codes):
            return PermanentMailError(f"recipient refused: {text}")
        return TemporaryMailError(f"recipient deferred: {text}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        text = f"{type(exc).__name__}: {exc.code} {exc.message}"
        if 500 <= exc.code < 600:
            return PermanentMailError(text)
        return TemporaryMailError(text)
    if isinstance(exc, aiosmtplib.SMTPNotSupported) or type(exc) is aiosmtplib.SMTPException:
        # aiosmtplib's plain SMTPException: a capability the settings need is missing,
        # e.g. AUTH offered only after STARTTLS.
        return PermanentMailError(f"not supported by the server: {exc}")
    if _caused_by(exc, ssl.SSLCertVerificationError):
        return PermanentMailError(f"TLS certificate refused: {exc}")
    return TemporaryMailError(f"{type(exc).__name__}: {exc}")


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def tls_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """Verifying TLS: the system's trust anchors, plus *ca_file* when given."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def _client(config: SmtpConfig, context: ssl.SSLContext) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(
        hostname=config.server,
        port=config.port,
        use_tls=config.implicit_tls,
        start_tls=config.starttls,
        tls_context=context,
        timeout=config.timeout,
        username=config.username or None,
        password=config.password or None,
        local_hostname=_LOCAL_HOSTNAME,
    )


class SmtpPool:
    """Open connections to one server, reused across mails; at most *size* at once."""

    def __init__(self, config: SmtpConfig, context: ssl.SSLContext, size: int) -> None:
        self.config = config
        self._context = context
        self._slots = asyncio.Semaphore(size)
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        self._closed = False
        self.connections_opened = 0

    async def send(self, sender: str, recipient: str, message: bytes) -> None:
        """Send *message*; raise TemporaryMailError or PermanentMailError."""
        async with self._slots:
            client, reused = await self._take()
            try:
                await client.sendmail(sender, [recipient], message)
            except aiosmtplib.SMTPServerDisconnected as exc:
                client.close()
                if not reused:
                    raise classify(exc) from exc
                # The server closed an idle connection before MAIL FROM: nothing was sent.
                client, _ = await self._fresh()
                await self._send_or_drop(client, sender, recipient, message)
            except BaseException as exc:
                # Never reuse a connection after an error or a cancellation mid-transaction.
                client.close()
                if isinstance(exc, Exception):
                    raise classify(exc) from exc
                raise
            if self._closed:
                client.close()
            else:
                self._idle.append((client, time.monotonic()))

    def close(self) -> None:
        """Close the idle connections, and those in use once their mail is sent."""
        self._closed = True
        idle, self._idle = self._idle, []
        for client, _ in idle:
            client.close()

    async def _send_or_drop(
        self, client: aiosmtplib.SMTP, sender: str, recipient: str, message: bytes
    ) -> None:
        try:
            await client.sendmail(sender, [recipient], message)
        except BaseException as exc:
            client.close()
            if isinstance(exc, Exception):
                raise classify(exc) from exc
            raise

    async def _take(self) -> tuple[aiosmtplib.SMTP, bool]:
        now = time.monotonic()
        while self._idle:
            client, since = self._idle.pop()
            if client.is_connected and now - since < IDLE_SECONDS:
                return client, True
            client.close()
        return await self._fresh()

    async def _fresh(self) -> tuple[aiosmtplib.SMTP, bool]:
        client = _client(self.config, self._context)
        try:
            await client.connect()
        except Exception as exc:
            raise classify(exc) from exc
        self.connections_opened += 1
        return client, False


async def send_once(
    config: SmtpConfig, context: ssl.SSLContext, recipient: str, message: bytes
) -> None:
    """Connect, send one mail, quit (a test mail); raise a MailError on failure."""
    client = _client(config, context)
    try:
        async with asyncio.timeout(config.timeout * 3):
            await client.connect()
            await client.sendmail(config.sender, [recipient], message)
            await client.quit()
    except Exception as exc:
        raise classify(exc) from exc
    finally:
        client.close()
