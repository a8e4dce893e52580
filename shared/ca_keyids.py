"""Key identifiers that tell a CA's generations apart: which key issued a certificate."""

from __future__ import annotations

from cryptography import x509


def subject_key_id(cert: x509.Certificate) -> str:
    """The CA certificate's key identifier (hex): its SKI, else the RFC 5280 SHA-1 of its key."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest.hex()


def authority_key_id(cert: x509.Certificate) -> str | None:
    """The key identifier (hex) of the key that signed *cert*, from its AKI; None without one."""
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return None
    return aki.key_identifier.hex() if aki.key_identifier else None
