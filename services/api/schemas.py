"""Request bodies, validated; each field's constraint is what a 400 names."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from services.api.params import Flag
from shared.echo import echo

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,119}$"
REALM = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,119}$"


class AuthRequest(BaseModel):
    """``POST /auth``."""

    model_config = ConfigDict(extra="ignore")

    username: str = Field(min_length=1, max_length=255)
    password: str = Field(min_length=1, max_length=1024)
    realm: str | None = Field(default=None, max_length=120)


class UserCreate(BaseModel):
    """``POST /user/``: a user of the internal store."""

    model_config = ConfigDict(extra="ignore")

    user: str = Field(pattern=NAME)
    realm: str = Field(pattern=REALM)
    email: EmailStr | None = None
    givenname: str = Field(default="", max_length=120)
    surname: str = Field(default="", max_length=120)
    password: str | None = Field(default=None, min_length=8, max_length=1024)

    @field_validator("email", mode="before")
    @classmethod
    def _empty_email(cls, value: object) -> object:
        return None if value == "" else value


class TokenInit(BaseModel):
    """``POST /token/init`` with ``type=certificate``."""

    model_config = ConfigDict(extra="ignore")

    type: str = Field(default="certificate", max_length=30)
    request: str | None = Field(default=None, max_length=65536)
    ca: str | None = Field(default=None, max_length=120)
    user: str | None = Field(default=None, max_length=255)
    realm: str | None = Field(default=None, max_length=120)
    template: str | None = Field(default=None, max_length=120)
    description: str = Field(default="", max_length=255)
    genkey: Flag = None
    keytype: str | None = Field(default=None, max_length=20)
    keysize: int | str | None = None
    pin: str | None = Field(default=None, max_length=1024)
    certificate: str | None = Field(default=None, max_length=65536)
    attestation: str | None = Field(default=None, max_length=65536)

    @field_validator("type")
    @classmethod
    def _certificate_only(cls, value: str) -> str:
        if value.lower() != "certificate":
            raise ValueError(f"unsupported token type {echo(value)}; only 'certificate' is served")
        return "certificate"
