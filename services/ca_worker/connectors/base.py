"""The CA connector interface: what every connector type offers the ca_worker."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from shared.ca_templates import (
    DEFAULT_KEY_TYPES,
    DEFAULT_MAX_CSR_BYTES,
    DEFAULT_SIGNATURE_HASHES,
    DEFAULT_TEMPLATE,
    TemplateOptions,
)
from shared.identity import Owner
from shared.pki import MIN_EC_BITS, MIN_RSA_BITS
from shared.san_rules import DEFAULT_SANS


@dataclass(frozen=True)
class Issued:
    """The CA issued a certificate."""

    certificate: str  # PEM
    serial_number: str  # lowercase hex
    subject: str  # RFC 4514
    not_before: datetime
    not_after: datetime
    chain: tuple[str, ...] = ()  # PEM, issuer first


@dataclass(frozen=True)
class Pending:
    """The CA holds the request for approval; ask again with *request_id*."""

    request_id: str


@dataclass(frozen=True)
class Denied:
    """The CA refused the request."""

    reason: str  # shown to the token's owner: certtoken's words, never the remote CA's
    detail: str = ""  # the remote CA's own words: for administrators and the audit log only


SignResult = Issued | Pending | Denied


class CAError(Exception):
    """The CA could not handle a request; ``str()`` is certtoken's message, ``detail`` the CA's."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail

    def denied(self) -> Denied:
        """The refusal this error means for a token."""
        return Denied(str(self), self.detail)


class TemporaryCAError(CAError):
    """The CA is unreachable or busy: retry later."""


class PermanentCAError(CAError):
    """The CA or its configuration cannot serve the request: the token fails with this reason."""


@dataclass(frozen=True)
class Template:
    """What kind of certificate to issue."""

    name: str = DEFAULT_TEMPLATE
    validity_days: int = 365
    key_usage: tuple[str, ...] = ("digitalSignature", "keyEncipherment")
    extended_key_usage: tuple[str, ...] = ("clientAuth",)
    approval: str = "none"
    profile: str = ""  # the CA's own profile name (cfssl)
    # The certificate's names (shared.identity.decide), with TemplateOptions' defaults.
    subject_components: tuple[str, ...] = ()  # from the owner: "email", "realm", ...
    csr_subject: str = "replace"
    admin_csr_subject: bool = False
    sans: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_SANS))
    # CSR policy (shared.csr_rules), with TemplateOptions' defaults.
    key_types: tuple[str, ...] = DEFAULT_KEY_TYPES
    min_rsa_bits: int = MIN_RSA_BITS
    min_ec_bits: int = MIN_EC_BITS
    signature_hashes: tuple[str, ...] = DEFAULT_SIGNATURE_HASHES
    max_csr_bytes: int = DEFAULT_MAX_CSR_BYTES

    @classmethod
    def from_options(cls, name: str, options: TemplateOptions) -> Template:
        """A template from its validated stored options."""
        return cls(
            name=name,
            validity_days=options.validity_days,
            key_usage=options.key_usage,
            extended_key_usage=options.extended_key_usage,
            approval=options.approval,
            profile=options.profile,
            subject_components=options.subject_components,
            csr_subject=options.csr_subject,
            admin_csr_subject=options.admin_csr_subject,
            sans=options.sans,
            key_types=options.key_types,
            min_rsa_bits=options.min_rsa_bits,
            min_ec_bits=options.min_ec_bits,
            signature_hashes=options.signature_hashes,
            max_csr_bytes=options.max_csr_bytes,
        )

    @property
    def needs_approval(self) -> bool:
        """Whether a CA manager must approve each request first."""
        return self.approval == "required"


class Connector(abc.ABC):
    """A configured CA connector."""

    name: str
    type: ClassVar[str]
    polls: ClassVar[bool] = False
    """Whether its CA may answer pending and decide later (the ca_worker then polls)."""

    @abc.abstractmethod
    async def sign(self, csr_pem: str, template: Template, owner: Owner) -> SignResult:
        """Ask the CA to certify *csr_pem* for *owner* according to *template*."""

    async def status(self, request_id: str) -> SignResult:
        """What became of a request the CA held (Issued, Pending or Denied)."""
        raise PermanentCAError(f"CA connector {self.name!r} holds no requests")

    async def withdraw(self, request_id: str) -> None:
        """Withdraw a request the CA still holds (best effort)."""
        _ = request_id  # nothing to withdraw unless the CA holds requests

    async def close(self) -> None:
        """Release the connector's connections (a local CA holds none)."""
        await asyncio.sleep(0)

    @abc.abstractmethod
    async def revoke(self, serial_number: str, reason: str) -> None:
        """Have the CA revoke the certificate with hex *serial_number*."""

    @abc.abstractmethod
    def ca_certificate(self) -> str:
        """The issuing CA's certificate, PEM."""

    def chain(self) -> tuple[str, ...]:
        """The issuing CA's chain, PEM, issuer first."""
        return (self.ca_certificate(),)
