"""The tables of certtoken; each has one writing service, named in its docstring."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    """Now, timezone-aware in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored naive in UTC and always read back timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Declarative base for all certtoken tables."""

    # Named constraints: SQLite's batch migrations can only alter what has a name.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Admin(Base):
    """An administrator of the internal admin store. Written by: CLI / api."""

    __tablename__ = "admin"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    # Where the notifier mails this admin (recipient "internal admin"); "" for none.
    email: Mapped[str] = mapped_column(String(255), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    """A user of the internal user store; a realm exists once it has a user. Written by: api."""

    __tablename__ = "user"
    __table_args__ = (UniqueConstraint("realm", "username", name="uq_user_realm_username"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    realm: Mapped[str] = mapped_column(String(120), index=True)
    username: Mapped[str] = mapped_column(String(120))
    email: Mapped[str] = mapped_column(String(255), default="")
    givenname: Mapped[str] = mapped_column(String(120), default="")
    surname: Mapped[str] = mapped_column(String(120), default="")
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CAConnector(Base):
    """A CA connector; ``options`` never hold a cleartext secret. Written by: CLI / api."""

    __tablename__ = "caconnector"

    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    type: Mapped[str] = mapped_column(String(40))
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    cacert: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Secret options (e.g. a cfssl auth key) as one SecretBox-sealed JSON object.
    secrets: Mapped[str] = mapped_column(Text, default="", server_default="")


class Token(Base):
    """A certificate token. Created by api; its outcome written by ca_worker."""

    __tablename__ = "token"
    __table_args__ = (
        Index("ix_token_owner", "realm", "username"),
        Index("ix_token_rollout_state", "rollout_state"),
        Index("ix_token_certificate_id", "certificate_id", unique=True),
    )

    serial: Mapped[str] = mapped_column(String(40), primary_key=True)
    tokentype: Mapped[str] = mapped_column(String(30), default="certificate")
    username: Mapped[str] = mapped_column(String(120), default="")
    realm: Mapped[str] = mapped_column(String(120), default="")
    rollout_state: Mapped[str] = mapped_column(String(20))
    ca: Mapped[str] = mapped_column(String(120), default="")
    template: Mapped[str] = mapped_column(String(120), default="")
    request: Mapped[str] = mapped_column(Text, default="")
    certificate: Mapped[str] = mapped_column(Text, default="")
    # The certificate's issuer and serial (shared.pki.certificate_id): one token per certificate.
    certificate_id: Mapped[str | None] = mapped_column(String(160), default=None)
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class IssuedCertificate(Base):
    """A certificate a local CA issued; one per token at most. Written by: ca_worker."""

    __tablename__ = "issued_certificate"
    __table_args__ = (
        UniqueConstraint("ca", "serial_number", name="uq_issued_ca_serial"),
        Index("ix_issued_ca_key_id", "ca", "issuer_key_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ca: Mapped[str] = mapped_column(String(120), ForeignKey("caconnector.name"))
    serial_number: Mapped[str] = mapped_column(String(64))
    token_serial: Mapped[str] = mapped_column(String(40), unique=True)
    subject: Mapped[str] = mapped_column(Text)
    not_before: Mapped[datetime]
    not_after: Mapped[datetime]
    certificate: Mapped[str] = mapped_column(Text)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    revocation_reason: Mapped[str | None] = mapped_column(String(40), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The key identifier (hex) of the CA key that signed it: which CA generation answers for it.
    issuer_key_id: Mapped[str | None] = mapped_column(String(128), default=None)


class OutboxMessage(Base):
    """A message waiting for the relay to publish it. Written by: whichever service enqueues."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_claim", "claimed_until"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    exchange: Mapped[str] = mapped_column(String(120))
    routing_key: Mapped[str] = mapped_column(String(120))
    message_type: Mapped[str] = mapped_column(String(120))
    body: Mapped[str] = mapped_column(Text)
    correlation_id: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(default=None)


# --- CA ---


class CATemplate(Base):
    """A certificate template of a CA connector. Written by: api."""

    __tablename__ = "ca_template"

    ca: Mapped[str] = mapped_column(String(120), ForeignKey("caconnector.name"), primary_key=True)
    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CARequest(Base):
    """A request held for approval or pending at the CA.

    Written by: ca_worker (the row, its status); api (only the decision columns).
    """

    __tablename__ = "ca_request"
    __table_args__ = (Index("ix_ca_request_ca_status", "ca", "status"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ca: Mapped[str] = mapped_column(String(120))
    token_serial: Mapped[str] = mapped_column(String(40), unique=True)
    template: Mapped[str] = mapped_column(String(120), default="")
    csr: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(20))  # approval (held here) | ca (held by the CA)
    remote_id: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[str] = mapped_column(String(20))
    username: Mapped[str] = mapped_column(String(120), default="")
    realm: Mapped[str] = mapped_column(String(120), default="")
    requester: Mapped[str] = mapped_column(String(255), default="")
    decision: Mapped[str | None] = mapped_column(String(20), default=None)
    decided_by: Mapped[str | None] = mapped_column(String(120), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CAPublication(Base):
    """A local CA's CRL and delegated OCSP responder (key sealed). Written by: ca_worker."""

    __tablename__ = "ca_publication"

    ca: Mapped[str] = mapped_column(String(120), ForeignKey("caconnector.name"), primary_key=True)
    crl_number: Mapped[int] = mapped_column(Integer, default=0)
    crl: Mapped[bytes] = mapped_column(LargeBinary)
    crl_this_update: Mapped[datetime]
    crl_next_update: Mapped[datetime]
    ocsp_cert: Mapped[str] = mapped_column(Text)
    ocsp_key: Mapped[str] = mapped_column(Text)
    ocsp_not_after: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The CA generation whose key signed the CRL and the responder certificate.
    generation: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class CAGeneration(Base):
    """A local CA's key and certificate replaced by a rollover, answering for what it issued
    (its CRL and OCSP responder, key sealed) until retired. Written by: cli (rollover),
    ca_worker (publication, retirement)."""

    __tablename__ = "ca_generation"
    __table_args__ = (UniqueConstraint("ca", "generation", name="uq_ca_generation"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ca: Mapped[str] = mapped_column(String(120), ForeignKey("caconnector.name"))
    generation: Mapped[int] = mapped_column(Integer)
    cacert: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(String(128))
    # The key store options (cakey or pkcs11_uri, cacert path, chain) of that generation.
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    crl_number: Mapped[int] = mapped_column(Integer, default=0)
    crl: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    crl_this_update: Mapped[datetime | None] = mapped_column(default=None)
    crl_next_update: Mapped[datetime | None] = mapped_column(default=None)
    ocsp_cert: Mapped[str] = mapped_column(Text, default="")
    ocsp_key: Mapped[str] = mapped_column(Text, default="")
    ocsp_not_after: Mapped[datetime | None] = mapped_column(default=None)
    superseded_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(default=None)


# --- notifier ---


class EventHandler(Base):
    """An event handler: events, conditions, an action and its options. Written by: api."""

    __tablename__ = "eventhandler"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    handlermodule: Mapped[str] = mapped_column(String(60))
    action: Mapped[str] = mapped_column(String(60))
    position: Mapped[str] = mapped_column(String(10), default="post")
    active: Mapped[bool] = mapped_column(default=True)
    ordering: Mapped[int] = mapped_column(Integer, default=0)
    conditions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    abort_on_error: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SmtpServer(Base):
    """An SMTP server the notifier sends through; ``password`` is sealed. Written by: api."""

    __tablename__ = "smtpserver"

    identifier: Mapped[str] = mapped_column(String(120), primary_key=True)
    server: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer, default=25)
    # privacyIDEA's ``tls`` is STARTTLS (this column); implicit TLS is certtoken's own.
    starttls: Mapped[bool] = mapped_column(default=False)
    implicit_tls: Mapped[bool] = mapped_column(default=False)
    username: Mapped[str] = mapped_column(String(255), default="")
    password: Mapped[str] = mapped_column(Text, default="")
    sender: Mapped[str] = mapped_column(String(255))
    timeout: Mapped[int] = mapped_column(Integer, default=10)
    description: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class MailDelivery(Base):
    """One mail of one handler for one event to one recipient. Written by: notifier."""

    __tablename__ = "mail_delivery"
    __table_args__ = (
        UniqueConstraint("event_id", "handler_id", "recipient", name="uq_mail_delivery_once"),
        Index("ix_mail_delivery_status", "status"),
        Index("ix_mail_delivery_serial", "serial"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(40))
    serial: Mapped[str] = mapped_column(String(40), default="")
    handler_id: Mapped[int] = mapped_column(Integer)
    handler_name: Mapped[str] = mapped_column(String(120), default="")
    # The key that makes a delivery unique: the address, or who lacked one.
    recipient: Mapped[str] = mapped_column(String(255))
    address: Mapped[str] = mapped_column(String(255), default="")
    smtpserver: Mapped[str] = mapped_column(String(120), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    message: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20))
    permanent: Mapped[bool] = mapped_column(default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    claim: Mapped[str] = mapped_column(String(40), default="")
    claimed_until: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)


# --- audit ---


class AuditEntry(Base):
    """One API call as the audit log keeps it; never a request body. Written by: api."""

    __tablename__ = "audit"
    __table_args__ = (
        Index("ix_audit_time", "time"),
        Index("ix_audit_serial", "serial"),
        Index("ix_audit_owner", "realm", "username"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(default=utcnow)
    role: Mapped[str] = mapped_column(String(20), default="")
    caller: Mapped[str] = mapped_column(String(255), default="")
    action: Mapped[str] = mapped_column(String(255))
    serial: Mapped[str] = mapped_column(String(40), default="")
    username: Mapped[str] = mapped_column(String(120), default="")
    realm: Mapped[str] = mapped_column(String(120), default="")
    success: Mapped[bool] = mapped_column(default=False)
    status: Mapped[int] = mapped_column(Integer, default=0)
    info: Mapped[str] = mapped_column(String(255), default="")
    client: Mapped[str] = mapped_column(String(64), default="")
    correlation_id: Mapped[str] = mapped_column(String(64), default="")
    duration: Mapped[float] = mapped_column(Float, default=0.0)
    user_agent: Mapped[str] = mapped_column(String(255), default="")
    server: Mapped[str] = mapped_column(String(255), default="")


class LoginFailure(Base):
    """Failed logins of one user since the last success or lockout. Written by: api."""

    __tablename__ = "login_failure"

    realm: Mapped[str] = mapped_column(String(120), primary_key=True)
    username: Mapped[str] = mapped_column(String(120), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RateLimit(Base):
    """Requests per client bucket and fixed window, shared by api processes. Written by: api."""

    __tablename__ = "rate_limit"

    bucket: Mapped[str] = mapped_column(String(200), primary_key=True)
    window: Mapped[int] = mapped_column(Integer, primary_key=True)
    hits: Mapped[int] = mapped_column(Integer, default=0)


# --- policies and server-generated keys ---


class Policy(Base):
    """A privacyIDEA-style policy: who it matches and which actions it sets. Written by: api."""

    __tablename__ = "policy"

    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    scope: Mapped[str] = mapped_column(String(20), index=True)
    # Action name to value: True for a plain action, else the text after "=".
    action: Mapped[dict[str, Any]] = mapped_column(default=dict)
    realm: Mapped[list[str]] = mapped_column(JSON, default=list)
    user: Mapped[list[str]] = mapped_column(JSON, default=list)
    adminrealm: Mapped[list[str]] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(default=True)
    priority: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TokenKey(Base):
    """A server-generated key pair of a token and its PKCS#12, sealed. Written by: ca_worker / api.

    ``private_key`` and ``password`` are SecretBox-sealed; the password is kept only until the
    PKCS#12 is built, and everything secret is cleared when the owner deletes it.
    """

    __tablename__ = "token_key"

    serial: Mapped[str] = mapped_column(String(40), primary_key=True)
    keytype: Mapped[str] = mapped_column(String(20))
    private_key: Mapped[str] = mapped_column(Text, default="")
    password: Mapped[str] = mapped_column(Text, default="")
    pkcs12: Mapped[str] = mapped_column(Text, default="")
    downloads: Mapped[int] = mapped_column(Integer, default=0)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class IdempotencyKey(Base):
    """An ``Idempotency-Key`` of ``POST /token/init`` and the token it made. Written by: api."""

    __tablename__ = "idempotency_key"
    __table_args__ = (Index("ix_idempotency_key_created_at", "created_at"),)

    # Whose key (role:name@realm): callers never share keys.
    caller: Mapped[str] = mapped_column(String(300), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # HMAC-SHA256 of the request body: a key reused with another body is refused.
    fingerprint: Mapped[str] = mapped_column(String(64))
    serial: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ExpiryNotice(Base):
    """An expiry notice sent: one per certificate and threshold. Written by: ca_worker.

    ``kind`` is ``token`` (subject: the token serial; certificate: its certificate id) or
    ``ca`` (subject: the connector; certificate: the SHA-256 fingerprint of its certificate).
    The unique key is what makes each notice go out once, whichever scanner gets there first.
    """

    __tablename__ = "expiry_notice"
    __table_args__ = (
        UniqueConstraint(
            "kind", "subject", "certificate", "threshold_days", name="uq_expiry_notice_once"
        ),
        Index("ix_expiry_notice_not_after", "not_after"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(10))
    subject: Mapped[str] = mapped_column(String(120))
    certificate: Mapped[str] = mapped_column(String(160))
    threshold_days: Mapped[int] = mapped_column(Integer)
    not_after: Mapped[datetime]
    event_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
