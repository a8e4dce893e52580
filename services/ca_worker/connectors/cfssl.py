"""The ``cfssl`` connector: a remote CA reached over CFSSL's HTTP API."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import ssl
from typing import Any, ClassVar

import httpx
from cryptography import x509
from cryptography.x509.oid import NameOID

from services.ca_worker.connectors.base import (
    CAError,
    Connector,
    Denied,
    Issued,
    PermanentCAError,
    SignResult,
    Template,
    TemporaryCAError,
)
from shared.ca_hosts import HostPolicy, HostRefused, HostUnresolved
from shared.cfssl_options import CfsslOptions
from shared.identity import Decision, Owner, Refused, decide, differences
from shared.pki import CSRError, cert_pem, load_certificate, name_text, parse_csr, serial_hex

# RFC 5280 reason names, as cfssl's revoke endpoint spells them.
REASONS = frozenset(
    {
        "unspecified",
        "keyCompromise",
        "cACompromise",
        "affiliationChanged",
        "superseded",
        "cessationOfOperation",
        "certificateHold",
        "privilegeWithdrawn",
        "aACompromise",
    }
)
_MAX_ERROR = 300
# The sign request's subject "names" keys for what certtoken may put in a subject.
_CFSSL_NAMES = {
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.COUNTRY_NAME: "C",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L",
}
log = logging.getLogger(__name__)


def auth_token(key: bytes, request: bytes) -> str:
    """cfssl's ``authsign`` token: the base64 HMAC-SHA256 of the request bytes."""
    return base64.b64encode(hmac.new(key, request, hashlib.sha256).digest()).decode()


def error_message(body: bytes) -> str:
    """The CA's own error text from a cfssl answer (bounded), or the raw body."""
    try:
        doc = json.loads(body)
        messages = [str(e.get("message", "")) for e in doc.get("errors") or []]
        text = "; ".join(m for m in messages if m)
    except (ValueError, AttributeError, TypeError):
        text = ""
    if not text:
        text = body.decode("utf-8", "replace").strip()
    return text[:_MAX_ERROR] or "no error message"


class CfsslConnector(Connector):
    """Signs through ``/api/v1/cfssl/sign`` (or ``authsign`` with an auth key)."""

    type: ClassVar[str] = "cfssl"

    def __init__(
        self,
        name: str,
        options: CfsslOptions,
        auth_key: bytes | None = None,
        hosts: HostPolicy | None = None,
    ) -> None:
        self.name = name
        self.options = options
        self._auth_key = auth_key
        self._hosts = hosts or HostPolicy()
        self._cacert = options.cacert
        verify: ssl.SSLContext | bool = options.tls_verify
        if options.tls_verify and options.tls_ca:
            verify = ssl.create_default_context(cadata=options.tls_ca)
        # A redirect could lead anywhere: only the checked host is ever asked.
        self._client = httpx.AsyncClient(
            timeout=options.timeout, verify=verify, follow_redirects=False
        )

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()

    async def sign(self, csr_pem: str, template: Template, owner: Owner) -> SignResult:
        """Submit *csr_pem* with the subject and hosts certtoken decided; cfssl issues or not."""
        try:
            csr = parse_csr(csr_pem)
            decision = decide(csr, len(csr_pem.encode()), template.name, template, owner, self.type)
        except (CSRError, Refused) as exc:
            return Denied(str(exc))
        request: dict[str, Any] = {
            "certificate_request": csr_pem,
            "profile": template.profile or self.options.profile,
            "subject": self._subject(decision, template),
            # Always a list: cfssl keeps the CSR's own SANs when hosts is missing.
            "hosts": [str(name.value) for name in decision.sans],
        }
        raw = json.dumps(request, separators=(",", ":")).encode()
        if self._auth_key is not None:
            path = "/api/v1/cfssl/authsign"
            body = json.dumps(
                {
                    "token": auth_token(self._auth_key, raw),
                    "request": base64.b64encode(raw).decode(),
                }
            ).encode()
        else:
            path, body = "/api/v1/cfssl/sign", raw
        result = await self._call(path, body)
        try:
            cert = load_certificate(str(result["certificate"]))
        except (KeyError, TypeError, ValueError):
            raise PermanentCAError(
                f"CA connector {self.name!r}: the CA answered without a certificate"
            ) from None
        surplus = differences(cert, csr, decision)
        if surplus:
            return await self._refuse_issued(cert, surplus)
        if not self._cacert:
            await self._load_cacert()
        return Issued(
            certificate=cert_pem(cert),
            serial_number=serial_hex(cert.serial_number),
            subject=name_text(cert.subject),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            chain=(self._cacert,) if self._cacert else (),
        )

    async def _refuse_issued(self, cert: x509.Certificate, surplus: str) -> Denied:
        """A certificate that says more than certtoken decided is not handed out (and revoked)."""
        serial = serial_hex(cert.serial_number)
        log.error(
            "CA issued a certificate beyond the decision",
            extra={"ca": self.name, "serial_number": serial, "difference": surplus},
        )
        if self.options.revoke:
            try:
                await self.revoke(serial, "cessationOfOperation")
            except CAError as exc:
                log.error("could not revoke it", extra={"ca": self.name, "error": str(exc)})
        return Denied(
            f"CA connector {self.name!r}: the CA issued a certificate with {surplus}, "
            "not what certtoken decided; it was not accepted"
        )

    async def revoke(self, serial_number: str, reason: str) -> None:
        """Revoke through ``/api/v1/cfssl/revoke`` (needs a certificate database at the CA)."""
        if not self.options.revoke:
            raise PermanentCAError(f"CA connector {self.name!r}: revocation is not enabled")
        if not self._cacert:
            await self._load_cacert()
        key_ids = [_key_id(self._cacert), ""]
        last = PermanentCAError(f"CA connector {self.name!r}: the CA did not revoke")
        # Older cfssl releases record issued certificates without the authority key id.
        for key_id in dict.fromkeys(key_ids):
            body = json.dumps(
                {
                    "serial": str(int(serial_number, 16)),
                    "authority_key_id": key_id,
                    "reason": reason if reason in REASONS else "unspecified",
                }
            ).encode()
            try:
                await self._call("/api/v1/cfssl/revoke", body)
                return
            except PermanentCAError as exc:
                if "not found" not in exc.detail:
                    raise
                last = exc
        raise last

    def ca_certificate(self) -> str:
        """The CA certificate as configured or as the CA's ``info`` told it ("" if unknown)."""
        return self._cacert

    async def _load_cacert(self) -> None:
        """Ask ``/api/v1/cfssl/info`` for the CA certificate."""
        body = json.dumps({"profile": self.options.profile}).encode()
        result = await self._call("/api/v1/cfssl/info", body)
        try:
            self._cacert = cert_pem(load_certificate(str(result["certificate"])))
        except (KeyError, TypeError, ValueError):
            raise PermanentCAError(
                f"CA connector {self.name!r}: info answered without a CA certificate"
            ) from None

    def _subject(self, decision: Decision, template: Template) -> dict[str, Any]:
        """The decided subject in cfssl's sign-request form (CN and names)."""
        names: dict[str, str] = {}
        for attribute in decision.subject:
            if attribute.oid == NameOID.COMMON_NAME:
                continue
            label = _CFSSL_NAMES.get(attribute.oid)
            if label is None:
                raise PermanentCAError(
                    f"template {template.name!r}: cfssl cannot put "
                    f"{attribute.rfc4514_string().partition('=')[0]} in the subject"
                )
            names[label] = str(attribute.value)
        common = decision.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        subject: dict[str, Any] = {"CN": str(common[0].value) if common else ""}
        if names:
            subject["names"] = [names]
        return subject

    async def _call(self, path: str, body: bytes) -> dict[str, Any]:
        """POST *body*; TemporaryCAError when unreachable or 5xx, PermanentCAError on refusal."""
        answer = await self._post(path, body)
        if answer.status_code >= 500 or answer.status_code in (408, 429):
            raise TemporaryCAError(
                f"CA connector {self.name!r}: HTTP {answer.status_code}: "
                f"{error_message(answer.content)}"
            )
        if 300 <= answer.status_code < 400:
            raise PermanentCAError(
                f"CA connector {self.name!r}: the CA answered with a redirect "
                f"(HTTP {answer.status_code}), which is not followed",
                detail=f"Location: {answer.headers.get('location', '')[:_MAX_ERROR]}",
            )
        try:
            doc = answer.json()
        except ValueError:
            doc = None
        if answer.status_code >= 400 or not isinstance(doc, dict) or not doc.get("success"):
            # The CA's own words may describe internal systems: administrators only.
            raise PermanentCAError(
                f"CA connector {self.name!r}: the CA refused the request "
                f"(HTTP {answer.status_code}); an administrator can see its answer",
                detail=error_message(answer.content),
            )
        result = doc.get("result")
        return result if isinstance(result, dict) else {}

    async def _post(self, path: str, body: bytes) -> httpx.Response:
        """POST to the CA's checked addresses in turn until one takes the connection.

        The name goes in Host and TLS SNI (the certificate is verified for it).
        """
        try:
            url, addresses = await self._hosts.check(self.options.url)
        except HostRefused as exc:
            raise PermanentCAError(f"CA connector {self.name!r}: url: {exc}") from None
        except HostUnresolved as exc:
            raise TemporaryCAError(f"CA connector {self.name!r}: {exc}") from None
        headers = {"content-type": "application/json", "host": url.host_header}
        extensions = {"sni_hostname": url.host} if url.address is None else {}
        failure = ""
        for address in addresses:
            try:
                return await self._client.post(
                    url.at(address) + path, content=body, headers=headers, extensions=extensions
                )
            except httpx.ConnectError as exc:
                # Nothing was sent: the next address (say IPv4 after ::1) may listen.
                failure = type(exc).__name__
            except httpx.TransportError as exc:
                failure = type(exc).__name__
                break
        raise TemporaryCAError(f"CA connector {self.name!r}: {failure} reaching {self.options.url}")


def _key_id(cacert: str) -> str:
    """The CA's subject key identifier, hex, as cfssl records it; "" when unknown."""
    if not cacert:
        return ""
    cert = load_certificate(cacert)
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return ""
    return ski.digest.hex()
