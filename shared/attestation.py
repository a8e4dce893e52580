"""Attestation certificates: parse, load trust stores, verify a chain and the attested key."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from shared.files import read_regular

MAX_PEM_BYTES = 64 * 1024
# Longest chain (leaf, intermediates, anchor) searched; hardware attestation chains are 3 deep.
MAX_DEPTH = 8
MAX_INTERMEDIATES = 8
# Signatures checked per verification at most: a crafted bundle must not make the search explode.
MAX_SIGNATURE_CHECKS = 64
_TRUST_SUFFIXES = (".pem", ".crt", ".cer")
# A trust store is a few CA certificates: these bounds are far above any real one.
MAX_TRUST_FILE_BYTES = 1024 * 1024
MAX_TRUST_FILES = 1000


class AttestationMode(enum.StrEnum):
    """``certificate_require_attestation``: how an enrollment's attestation is treated."""

    IGNORE = "ignore"
    VERIFY = "verify"
    REQUIRE_AND_VERIFY = "require_and_verify"


class AttestationError(ValueError):
    """An attestation that fails a check; str() names the field and the failed part."""

    def __init__(self, message: str) -> None:
        super().__init__(f"attestation: {message}")


@dataclass(frozen=True)
class Attested:
    """A verified attestation: the attestation certificate's subject and issuer."""

    subject: str
    issuer: str


def parse_certificates(pem: str | bytes, field: str = "attestation") -> list[x509.Certificate]:
    """The PEM certificates in *pem*, in order; ValueError naming *field* when there are none."""
    raw = pem.encode("utf-8", "replace") if isinstance(pem, str) else pem
    if len(raw) > MAX_PEM_BYTES:
        raise ValueError(f"{field}: larger than {MAX_PEM_BYTES // 1024} KiB")
    try:
        certs = x509.load_pem_x509_certificates(raw.strip())
    except (ValueError, x509.InvalidVersion):
        # InvalidVersion is no ValueError: an unknown version field must not be a 500.
        raise ValueError(f"{field}: not a PEM-encoded X.509 certificate") from None
    try:
        # Names are parsed lazily: read now, a malformed one is this ValueError, not a 500 later.
        for cert in certs:
            cert.subject.rfc4514_string()
            cert.issuer.rfc4514_string()
    except ValueError:
        raise ValueError(f"{field}: a certificate has a malformed subject or issuer") from None
    return certs


def load_trust_store(path: Path | None) -> list[x509.Certificate]:
    """Trusted attestation CA certificates from a PEM bundle file or a directory of them.

    Only regular files are read, each at most MAX_TRUST_FILE_BYTES; anything else named like
    a bundle (a FIFO, a device, a folder) is a ValueError, never a read that blocks.
    """
    if path is None or not str(path):
        return []
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in _TRUST_SUFFIXES)
        if len(files) > MAX_TRUST_FILES:
            raise ValueError(f"more than {MAX_TRUST_FILES} certificate files")
    else:
        files = [path]
    trusted: list[x509.Certificate] = []
    for file in files:
        try:
            loaded = x509.load_pem_x509_certificates(read_regular(file, MAX_TRUST_FILE_BYTES))
        except x509.InvalidVersion:
            raise ValueError(f"{file}: a certificate of an unknown X.509 version") from None
        trusted.extend(loaded)
    return trusted


def same_key(a: CertificatePublicKeyTypes, b: CertificatePublicKeyTypes) -> bool:
    """Whether two public keys are the same key (compared as SubjectPublicKeyInfo)."""
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_bytes(*spki) == b.public_bytes(*spki)


def verify_attestation(
    chain: Sequence[x509.Certificate],
    key: CertificatePublicKeyTypes,
    trusted: Sequence[x509.Certificate],
    now: datetime | None = None,
) -> Attested:
    """Check that *chain* (leaf first) attests *key* and leads to a *trusted* CA at *now*."""
    if not chain:
        raise AttestationError("missing")
    if len(chain) > 1 + MAX_INTERMEDIATES:
        raise AttestationError(f"more than {MAX_INTERMEDIATES} intermediate certificates")
    leaf = chain[0]
    try:
        attested_key = leaf.public_key()
    except (UnsupportedAlgorithm, ValueError):
        raise AttestationError("the certificate's key type is not supported") from None
    if not same_key(attested_key, key):
        raise AttestationError("key mismatch: the certificate attests a different public key")
    when = now or datetime.now(UTC)
    _check_validity(leaf, when)
    if not trusted:
        raise AttestationError("untrusted chain: no trusted attestation CA is configured")
    anchors = {c.public_bytes(serialization.Encoding.DER) for c in trusted}
    problems: list[str] = []
    budget = [MAX_SIGNATURE_CHECKS]
    if not _build(leaf, list(chain[1:]), list(trusted), anchors, when, [leaf], problems, budget):
        detail = problems[0] if problems else "no path to a trusted attestation CA"
        raise AttestationError(f"untrusted chain: {detail}")
    return Attested(leaf.subject.rfc4514_string(), leaf.issuer.rfc4514_string())


def _check_validity(cert: x509.Certificate, when: datetime) -> None:
    if when > cert.not_valid_after_utc:
        raise AttestationError(
            f"expired: {cert.subject.rfc4514_string()!r} was valid until "
            f"{cert.not_valid_after_utc.isoformat()}"
        )
    if when < cert.not_valid_before_utc:
        raise AttestationError(
            f"not yet valid: {cert.subject.rfc4514_string()!r} is valid from "
            f"{cert.not_valid_before_utc.isoformat()}"
        )


def _build(
    cert: x509.Certificate,
    intermediates: list[x509.Certificate],
    trusted: list[x509.Certificate],
    anchors: set[bytes],
    when: datetime,
    path: list[x509.Certificate],
    problems: list[str],
    budget: list[int],
) -> bool:
    """Depth-first search for a path from *cert* to a trust anchor; notes why paths failed."""
    if len(path) > MAX_DEPTH:
        return False
    for issuer in [*trusted, *intermediates]:
        if issuer in path or issuer.subject != cert.issuer:
            continue
        if budget[0] <= 0:
            problems.insert(0, "too many candidate issuers to check")
            return False
        budget[0] -= 1
        if not _signed_by(cert, issuer):
            problems.append(f"signature of {cert.subject.rfc4514_string()!r} does not verify")
            continue
        # CA certificates between the leaf and this issuer: what its path length must allow.
        below = len(path) - 1
        reason = _ca_problem(issuer, below)
        if reason:
            problems.append(reason)
            continue
        _check_validity(issuer, when)
        if issuer.public_bytes(serialization.Encoding.DER) in anchors:
            return True
        if _build(issuer, intermediates, trusted, anchors, when, [*path, issuer], problems, budget):
            return True
    return False


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether *issuer*'s key made *cert*'s signature (RSA PKCS#1 v1.5 or PSS, ECDSA, EdDSA)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _ca_problem(issuer: x509.Certificate, below: int) -> str:
    """Why *issuer* may not sign here ("" when it may): CA flag, key usage, path length."""
    name = issuer.subject.rfc4514_string()
    try:
        constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return f"{name!r} is not a CA certificate (no basicConstraints)"
    if not constraints.ca:
        return f"{name!r} is not a CA certificate (CA:FALSE)"
    if constraints.path_length is not None and below > constraints.path_length:
        return f"{name!r} allows {constraints.path_length} CA certificates below it, not {below}"
    try:
        usage = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return ""
    if not usage.key_cert_sign:
        return f"{name!r} may not sign certificates (keyUsage lacks keyCertSign)"
    return ""
