"""Options of a ``cfssl`` CA connector, validated the same way by api and ca_worker."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.ca_hosts import parse_ca_url
from shared.validation import validated

SECRET_OPTIONS = frozenset({"auth_key"})
"""Write-only options: sealed apart, never stored in ``options``, never shown."""


class CfsslOptions(BaseModel):
    """The non-secret options of a cfssl connector (the auth key is sealed apart)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(max_length=500)
    profile: str = Field(default="", max_length=120)
    tls_verify: bool = True
    tls_ca: str = Field(default="", max_length=65536)
    timeout: float = Field(default=10.0, gt=0, le=300)
    cacert: str = Field(default="", max_length=65536)
    revoke: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        # Syntax only (scheme, no userinfo, canonical IPs); the host allow-list needs settings.
        parse_ca_url(value)
        return value.rstrip("/")

    @field_validator("tls_ca", "cacert")
    @classmethod
    def _pem(cls, value: str) -> str:
        if value and "-----BEGIN CERTIFICATE-----" not in value:
            raise ValueError("must be a PEM certificate")
        return value


def cfssl_options(options: dict[str, Any]) -> CfsslOptions:
    """Validated options; ValueError naming the field otherwise."""
    return validated(CfsslOptions, options, "options")
