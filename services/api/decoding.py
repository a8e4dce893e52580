"""What a PEM request or certificate says, in plain values: for people deciding about it."""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.api.errors import ParameterError
from shared.pki import (
    CSRError,
    csr_summary,
    general_name_text,
    key_info,
    load_certificate,
    name_text,
    parse_csr,
    serial_hex,
)

_KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)


class DecodeBody(BaseModel):
    """``POST /certificate/decode``: one PEM text, a CSR or a certificate."""

    model_config = ConfigDict(extra="ignore")

    csr: str | None = Field(default=None, max_length=65536)
    certificate: str | None = Field(default=None, max_length=65536)

    @model_validator(mode="after")
    def _one(self) -> DecodeBody:
        if (self.csr is None) == (self.certificate is None):
            raise ValueError("give either csr or certificate")
        return self


def decode(body: DecodeBody) -> dict[str, Any]:
    """The decoded CSR or certificate of *body*; ParameterError naming the field otherwise."""
    if body.csr is not None:
        try:
            return {"kind": "csr", **csr_summary(parse_csr(body.csr))}
        except CSRError as exc:
            # CSRError names /token/init's field ("request: ..."); here the field is csr.
            raise ParameterError(f"csr: {str(exc).partition(': ')[2]}") from None
    try:
        cert = load_certificate(body.certificate or "")
    except ValueError as exc:
        raise ParameterError(str(exc)) from None
    return certificate_summary(cert)


def certificate_summary(cert: x509.Certificate) -> dict[str, Any]:
    """Subject, SANs, issuer, validity, serial, fingerprint, key and usages of *cert*."""
    key_type, key_size, curve = key_info(cert.public_key())
    return {
        "kind": "certificate",
        "subject": name_text(cert.subject),
        "sans": [general_name_text(name) for name in _extension(cert, x509.SubjectAlternativeName)],
        "issuer": name_text(cert.issuer),
        "serial": serial_hex(cert.serial_number),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "sha256_fingerprint": _colon_hex(hashlib.sha256(cert.public_bytes(Encoding.DER)).digest()),
        "key_type": key_type,
        "key_size": key_size,
        "curve": curve,
        "key_usage": _key_usage(cert),
        "extended_key_usage": [
            getattr(oid, "_name", None) or oid.dotted_string
            for oid in _extension(cert, x509.ExtendedKeyUsage)
        ],
        "is_ca": _is_ca(cert),
    }


def _extension(cert: x509.Certificate, kind: type[Any]) -> list[Any]:
    """The values of *cert*'s extension of *kind*; empty without it."""
    try:
        return list(cert.extensions.get_extension_for_class(kind).value)
    except x509.ExtensionNotFound:
        return []


def _key_usage(cert: x509.Certificate) -> list[str]:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return []
    return [name for name in _KEY_USAGES if getattr(usage, name)]


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _colon_hex(digest: bytes) -> str:
    return ":".join(f"{byte:02X}" for byte in digest)
