"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, in its own thread, collecting mail.

It can refuse recipients (5xx), defer them (4xx), hold DATA until released (a mail "in
flight"), require STARTTLS or implicit TLS, and require AUTH. ``tls_files`` makes a test CA
and a server certificate for 127.0.0.1 with ``cryptography``.
"""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import ipaddress
import re
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.procs import free_port

HOST = "127.0.0.1"
_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Received:
    """One mail the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    authenticated_as: str

    @property
    def message(self) -> EmailMessage:
        """The parsed mail."""
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def subject(self) -> str:
        """The decoded subject."""
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        """The decoded body text."""
        part = self.message.get_body(("plain", "html"))
        assert part is not None
        return str(part.get_content())  # type: ignore[attr-defined]


class _Handler:
    """aiosmtpd hooks: refuse, defer or hold as the test says; record what is accepted."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        sink = self.sink
        with sink.lock:
            sink.rcpt_attempts.append(address)
            if address in sink.refused:
                return "550 5.1.1 no such mailbox"
            if sink.deferrals > 0:
                sink.deferrals -= 1
                return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        sink = self.sink
        with sink.lock:
            sink.data_attempts += 1
        # A held mail is not accepted: if the client goes away meanwhile, aiosmtpd cancels
        # this coroutine and the mail is never recorded, as with a real server.
        if not sink.released.is_set():
            await asyncio.to_thread(sink.released.wait)
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else ""
        received = Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, login)
        with sink.lock:
            sink.received.append(received)
        return "250 2.0.0 accepted"


class _Session(SMTP):
    """aiosmtpd's SMTP, counting open connections."""

    def __init__(self, sink: SmtpSink, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sink = sink

    def connection_made(self, transport: Any) -> None:
        with self.sink.lock:
            self.sink.connections += 1
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        with self.sink.lock:
            self.sink.connections -= 1
        super().connection_lost(error)


class _Controller(Controller):
    def __init__(self, sink: SmtpSink, *args: Any, **kwargs: Any) -> None:
        self.sink = sink
        super().__init__(*args, **kwargs)

    def factory(self) -> SMTP:
        return _Session(self.sink, self.handler, **self.SMTP_kwargs)


class SmtpSink:
    """An aiosmtpd server on 127.0.0.1; start, stop and start again on the same port."""

    def __init__(
        self,
        *,
        port: int | None = None,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
        login: tuple[str, str] | None = None,
    ) -> None:
        self.host = HOST
        self.port = port or free_port()
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.rcpt_attempts: list[str] = []
        self.data_attempts = 0
        self.connections = 0
        self.refused: set[str] = set()
        self.deferrals = 0
        self.released = threading.Event()
        self.released.set()
        self._starttls = starttls
        self._implicit_tls = implicit_tls
        self._login = login
        self._controller: Controller | None = None

    def start(self) -> SmtpSink:
        """Listen (again) on the sink's port."""
        kwargs: dict[str, Any] = {}
        if self._starttls is not None:
            kwargs.update(tls_context=self._starttls, require_starttls=True)
        if self._implicit_tls is not None:
            kwargs.update(ssl_context=self._implicit_tls)
        if self._login is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True)
            # aiosmtpd counts only STARTTLS as TLS; an implicit-TLS connection is one too.
            if self._starttls is None:
                kwargs.update(auth_require_tls=False)
        controller = _Controller(self, _Handler(self), hostname=HOST, port=self.port, **kwargs)
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        """Stop listening; mail already received stays."""
        if self._controller is not None:
            self.released.set()
            self._controller.stop()
            self._controller = None

    def hold(self) -> None:
        """From now on, keep each mail's DATA unanswered until :meth:`release`."""
        self.released.clear()

    def release(self) -> None:
        """Answer held and later DATA commands again."""
        self.released.set()

    def mails_to(self, address: str) -> list[Received]:
        """Accepted mails addressed to *address*."""
        with self.lock:
            return [r for r in self.received if address in r.rcpt_tos]

    def count(self) -> int:
        """How many mails were accepted."""
        with self.lock:
            return len(self.received)

    def distinct(self) -> int:
        """How many different mails (by Message-ID) were accepted: copies count once."""
        with self.lock:
            raws = [r.raw for r in self.received]
        return len({found.group(1) if (found := _MESSAGE_ID.search(raw)) else raw for raw in raws})

    def open_connections(self) -> int:
        """Clients connected now."""
        with self.lock:
            return self.connections

    def held(self) -> int:
        """Mails whose DATA arrived and is not answered (while holding)."""
        with self.lock:
            return self.data_attempts - len(self.received)

    async def wait_for(self, count: int, within: float = 30) -> list[Received]:
        """Wait until at least *count* mails were accepted; all of them."""
        deadline = time.monotonic() + within
        while self.count() < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.count()} of {count} mails arrived within {within} s")
            await asyncio.sleep(0.02)
        with self.lock:
            return list(self.received)

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert self._login is not None
        user, password = self._login
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


@contextmanager
def running_sink(**kwargs: Any) -> Iterator[SmtpSink]:
    """A started sink, stopped afterwards."""
    sink = SmtpSink(**kwargs).start()
    try:
        yield sink
    finally:
        sink.stop()


@dataclass(frozen=True)
class TlsFiles:
    """A test CA (for clients to trust) and a server context with a certificate for 127.0.0.1."""

    ca_file: Path
    server_context: ssl.SSLContext


def tls_files(directory: Path) -> TlsFiles:
    """Make a CA and a server certificate (SAN 127.0.0.1, localhost) under *directory*."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certtoken test SMTP CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "smtp-ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file, key_file = directory / "smtp.pem", directory / "smtp.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return TlsFiles(ca_file, context)
