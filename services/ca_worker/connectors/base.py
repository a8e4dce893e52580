"""The CA connector interface: what every connector type offers the ca_worker."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime


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

    reason: str


SignResult = Issued | Pending | Denied


class CAError(Exception):
    """The CA could not handle a request."""


class TemporaryCAError(CAError):
    """The CA is unreachable or busy: retry later."""


class PermanentCAError(CAError):
    """The CA or its configuration cannot serve the request: the token fails with this reason."""


@dataclass(frozen=True)
class Template:
    """What kind of certificate to issue."""

    name: str = "default"
    validity_days: int = 365
    key_usage: tuple[str, ...] = ("digitalSignature", "keyEncipherment")
    extended_key_usage: tuple[str, ...] = ("clientAuth",)


class Connector(abc.ABC):
    """A configured CA connector."""

    name: str

    @abc.abstractmethod
    async def sign(self, csr_pem: str, template: Template) -> SignResult:
        """Ask the CA to certify *csr_pem* according to *template*."""

    @abc.abstractmethod
    def ca_certificate(self) -> str:
        """The issuing CA's certificate, PEM."""
