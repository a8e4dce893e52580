"""Request bodies of ``/event`` and ``/smtpserver``; what a 400 names comes from here."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationInfo, field_validator

from services.api.params import BodyId
from services.api.schemas import NAME
from shared.notification.smtp import server_address

HOST = r"^(smtps?://)?[A-Za-z0-9_.:\[\]-]{1,255}$"


class SmtpServerBody(BaseModel):
    """``POST /smtpserver/<identifier>``; without ``password`` a stored one is kept."""

    model_config = ConfigDict(extra="ignore")

    server: str = Field(pattern=HOST)
    port: int = Field(default=25, ge=1, le=65535)
    # privacyIDEA's meaning: STARTTLS. ``starttls`` is certtoken's older name for it.
    tls: bool = False
    starttls: bool = False
    implicit_tls: bool = False
    username: str = Field(default="", max_length=255)
    password: str | None = Field(default=None, max_length=1024)
    sender: EmailStr
    timeout: int = Field(default=10, ge=1, le=120)
    description: str = Field(default="", max_length=255)
    smime: bool = False

    @field_validator("server")
    @classmethod
    def _server_url(cls, value: str) -> str:
        server_address(value)
        return value

    @field_validator("implicit_tls")
    @classmethod
    def _one_tls_mode(cls, value: bool, info: ValidationInfo) -> bool:
        if value and (info.data.get("tls") or info.data.get("starttls")):
            raise ValueError("implicit TLS and STARTTLS (tls, starttls) exclude each other")
        return value

    @field_validator("smime")
    @classmethod
    def _no_smime(cls, value: bool) -> bool:
        if value:
            raise ValueError("S/MIME signing is not supported")
        return value

    @property
    def use_starttls(self) -> bool:
        """STARTTLS, whichever of its two names asked for it."""
        return self.tls or self.starttls


class SendTestEmailBody(BaseModel):
    """``POST /smtpserver/send_test_email``."""

    model_config = ConfigDict(extra="ignore")

    identifier: str = Field(pattern=NAME)
    recipient: EmailStr


class EventHandlerBody(BaseModel):
    """``POST /event``: privacyIDEA's fields; ``option.<key>`` parameters come as ``options``."""

    model_config = ConfigDict(extra="forbid")

    id: BodyId | None = None
    name: str = Field(min_length=1, max_length=120)
    event: list[str] | str
    handlermodule: str = Field(max_length=60)
    action: str = Field(max_length=60)
    position: str = Field(default="post", max_length=10)
    active: bool = True
    ordering: int = Field(default=0, ge=0, le=1_000_000)
    conditions: dict[str, Any] | str = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    # Stored and shown for privacyIDEA clients; omitted on update, the stored value stays.
    abort_on_error: bool | None = None


class DryRunBody(BaseModel):
    """``POST /event/test``: an event as the notifier would receive it (CloudEvent fields)."""

    model_config = ConfigDict(extra="ignore")

    event: str | None = Field(default=None, max_length=40)
    type: str | None = Field(default=None, max_length=40)
    id: str = Field(default="dry-run", min_length=1, max_length=64)
    time: str = Field(default="", max_length=64)
    data: dict[str, Any]
