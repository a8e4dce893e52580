"""The PKCS#12 file a genkey token's owner downloads: key, certificate and CA chain."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

# PBKDF2 rounds for the key and certificate bags (the MAC keeps 2048). The password may be a
# short PIN, so more than OpenSSL's default 2048; the work runs in the low-priority key pool.
KDF_ROUNDS = 100_000


def build_pkcs12(
    key_pem: bytes, password: bytes, certificate_pem: str, chain: Sequence[str], name: str
) -> bytes:
    """A DER PKCS#12 (PBES2, AES-256-CBC, HMAC-SHA256) that ``openssl pkcs12`` opens."""
    if not password:
        raise ValueError("password: a PKCS#12 is never written unencrypted")
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("key: only RSA and EC keys are generated")
    certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
    cas = [
        ca for pem in chain if pem.strip() for ca in x509.load_pem_x509_certificates(pem.encode())
    ]
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(KDF_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password)
    )
    return pkcs12.serialize_key_and_certificates(
        name.encode(), key, certificate, cas or None, encryption
    )
