"""Uploaded certificates: which a token may hold, and the proof that the uploader holds the key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from services.api.errors import ParameterError
from shared.attestation import parse_certificates, same_key
from shared.pki import CSRError, cert_pem, certificate_id, name_text, parse_csr, serial_hex

PROOF_POLICY = "certificate_upload_require_proof"
HELD = "certificate: another token holds this certificate already (same issuer and serial number)"


@dataclass(frozen=True)
class UploadedCertificate:
    """An uploaded certificate that a token may hold, with the token info it gives."""

    certificate: x509.Certificate
    pem: str
    info: dict[str, Any]

    @property
    def identity(self) -> str:
        """Its issuer and serial as one key (``token.certificate_id``)."""
        return certificate_id(self.certificate)


def uploaded_certificate(pem: str, now: datetime | None = None) -> UploadedCertificate:
    """The uploaded certificate and its token info; 400 when unusable or a CA certificate."""
    try:
        cert = parse_certificates(pem, field="certificate")[0]
    except ValueError as exc:
        raise ParameterError(str(exc)) from None
    when = now or datetime.now(UTC)
    if when > cert.not_valid_after_utc:
        raise ParameterError(f"certificate: expired on {cert.not_valid_after_utc.isoformat()}")
    if when < cert.not_valid_before_utc:
        raise ParameterError(
            f"certificate: not yet valid, valid from {cert.not_valid_before_utc.isoformat()}"
        )
    reason = _ca_reason(cert)
    if reason:
        raise ParameterError(
            f"certificate: a CA certificate ({reason}) cannot be a token's certificate"
        )
    info = {
        "subject": name_text(cert.subject),
        "certificate_subject": name_text(cert.subject),
        "certificate_issuer": name_text(cert.issuer),
        "certificate_serial": serial_hex(cert.serial_number),
        "certificate_not_after": cert.not_valid_after_utc.isoformat(),
    }
    return UploadedCertificate(cert, cert_pem(cert), info)


def _ca_reason(cert: x509.Certificate) -> str | None:
    """Why *cert* is a CA certificate, or None."""
    try:
        extensions = cert.extensions
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        raise ParameterError("certificate: the certificate has malformed extensions") from None
    try:
        if extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return "basicConstraints cA=TRUE"
    except x509.ExtensionNotFound:
        pass
    try:
        if extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign:
            return "keyUsage keyCertSign"
    except x509.ExtensionNotFound:
        pass
    return None


def check_proof(cert: x509.Certificate, request: str | None, required: bool) -> dict[str, Any]:
    """Token info on the proof of possession *request* (a CSR) gives; 400 when it fails.

    A CSR sent along is checked even when no policy requires one: a wrong proof is a mistake
    worth telling, not something to ignore.
    """
    if not request or not request.strip():
        if required:
            raise ParameterError(
                "request: required with 'certificate': a CSR made with the certificate's key "
                f"proves that you hold it (policy {PROOF_POLICY})"
            )
        return {}
    try:
        csr = parse_csr(request)
        matches = same_key(csr.public_key(), cert.public_key())
    except CSRError as exc:
        raise ParameterError(f"{exc} (the proof of possession for 'certificate')") from None
    except (UnsupportedAlgorithm, ValueError):
        raise ParameterError("certificate: the certificate's key type is not supported") from None
    if not matches:
        raise ParameterError(
            "request: proof of possession failed: the CSR's key is not the certificate's key"
        )
    return {"key_possession_proven": True}
