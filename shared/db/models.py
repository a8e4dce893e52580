"""The tables of certtoken; each has one writing service, named in its docstring."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
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


class Token(Base):
    """A certificate token. Created by api; its outcome written by ca_worker."""

    __tablename__ = "token"
    __table_args__ = (
        Index("ix_token_owner", "realm", "username"),
        Index("ix_token_rollout_state", "rollout_state"),
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
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class IssuedCertificate(Base):
    """A certificate a local CA issued; one per token at most. Written by: ca_worker."""

    __tablename__ = "issued_certificate"
    __table_args__ = (UniqueConstraint("ca", "serial_number", name="uq_issued_ca_serial"),)

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
