"""A template's CSR policy: which keys, signature hashes and sizes it accepts (pure functions)."""

from __future__ import annotations

import re
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from shared.pki import key_info

# Keys whose signature scheme has no separate hash: the key type alone decides.
_HASHLESS_KEYS = ("ed25519", "ed448")
_KEYTYPE = re.compile(r"^(?:rsa-(?P<rsa>[0-9]{1,5})|ec-p(?P<ec>[0-9]{3})|(?P<ed>ed25519|ed448))$")


class CSRPolicy(Protocol):
    """The CSR rules of a template (TemplateOptions and the ca_worker's Template have them)."""

    @property
    def key_types(self) -> tuple[str, ...]:
        """Allowed key types: rsa, ec, ed25519, ed448."""
        ...

    @property
    def min_rsa_bits(self) -> int:
        """The smallest RSA modulus accepted, in bits."""
        ...

    @property
    def min_ec_bits(self) -> int:
        """The smallest EC curve accepted, in bits (256: P-256)."""
        ...

    @property
    def signature_hashes(self) -> tuple[str, ...]:
        """Allowed hashes of the CSR's self-signature."""
        ...

    @property
    def max_csr_bytes(self) -> int:
        """The largest CSR accepted, as sent (PEM text), in bytes."""
        ...


def csr_violation(
    csr: x509.CertificateSigningRequest, size: int, template_name: str, options: CSRPolicy
) -> str | None:
    """Which rule of template *template_name* the CSR (*size* bytes as sent) breaks, or None."""
    where = f"request: template {template_name!r}"
    if size > options.max_csr_bytes:
        return (
            f"{where} allows at most {options.max_csr_bytes} bytes (max_csr_bytes); "
            f"this CSR has {size}"
        )
    key_type, bits, curve = key_info(csr.public_key())
    has = f"this CSR has {bits}" + (f" ({curve})" if curve else "")
    violation = _key_violation(where, key_type, bits or 0, options, has)
    if violation:
        return violation
    try:
        algorithm = csr.signature_hash_algorithm
    except UnsupportedAlgorithm:
        algorithm = None
    if algorithm is None and key_type in _HASHLESS_KEYS:
        return None
    hash_name = algorithm.name if algorithm is not None else "unknown-hash"
    if hash_name not in options.signature_hashes:
        return (
            f"{where} does not allow {hash_name} signatures (signature_hashes; allowed: "
            f"{', '.join(options.signature_hashes)})"
        )
    return None


def keytype_violation(keytype: str, template_name: str, options: CSRPolicy) -> str | None:
    """Which rule of template *template_name* a server-generated key of *keytype* breaks."""
    where = f"keytype: template {template_name!r}"
    match = _KEYTYPE.match(keytype.strip().lower())
    if match is None:
        return f"keytype: unknown key type {keytype!r}; use e.g. rsa-3072 or ec-p256"
    if match["rsa"]:
        key_type, bits = "rsa", int(match["rsa"])
    elif match["ec"]:
        key_type, bits = "ec", int(match["ec"])
    else:
        key_type, bits = match["ed"], 0
    return _key_violation(where, key_type, bits, options, f"{keytype} has {bits}")


def _key_violation(
    where: str, key_type: str, bits: int, options: CSRPolicy, has: str
) -> str | None:
    """The key-type or key-size rule a key breaks; *has* says what the request offers."""
    if key_type not in options.key_types:
        return (
            f"{where} does not allow {key_type} keys (key_types; allowed: "
            f"{', '.join(options.key_types)})"
        )
    if key_type == "rsa" and bits < options.min_rsa_bits:
        return (
            f"{where} requires RSA keys of at least {options.min_rsa_bits} bits (min_rsa_bits); "
            f"{has}"
        )
    if key_type == "ec" and bits < options.min_ec_bits:
        return (
            f"{where} requires EC keys of at least {options.min_ec_bits} bits (min_ec_bits); {has}"
        )
    return None
