"""The file key store: a CA key encrypted under certtoken's CA passphrase in the data dir."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from services.ca_worker.connectors.base import PermanentCAError
from shared.pki import PrivateKey


class FileCAKey:
    """A CA key decrypted once into memory from its encrypted PEM file."""

    def __init__(self, key: PrivateKey) -> None:
        self._key = key

    @classmethod
    def load(
        cls, name: str, options: Mapping[str, Any], data_dir: Path, passphrase: bytes
    ) -> FileCAKey:
        """Read and decrypt the file the option ``cakey`` names."""
        if not passphrase:
            raise PermanentCAError(f"CA connector {name!r}: no CA passphrase is configured")
        path = option_path(name, options, "cakey", data_dir)
        return cls(decrypt_key(name, read_file(name, path), path, passphrase))

    def public_key(self) -> CertificatePublicKeyTypes:
        """The CA's public key."""
        return self._key.public_key()

    @property
    def signs_quickly(self) -> bool:
        """An EC key in memory: 0.07 ms a certificate; RSA takes milliseconds."""
        return isinstance(self._key, ec.EllipticCurvePrivateKey)

    def sign_certificate(
        self, builder: x509.CertificateBuilder, algorithm: hashes.HashAlgorithm
    ) -> x509.Certificate:
        """Sign a certificate."""
        return builder.sign(self._key, _supported(algorithm))

    def sign_crl(
        self, builder: x509.CertificateRevocationListBuilder, algorithm: hashes.HashAlgorithm
    ) -> x509.CertificateRevocationList:
        """Sign a CRL."""
        return builder.sign(self._key, _supported(algorithm))

    def sign_csr(
        self, builder: x509.CertificateSigningRequestBuilder, algorithm: hashes.HashAlgorithm
    ) -> x509.CertificateSigningRequest:
        """Sign a certificate signing request (for the CA's own certificate)."""
        return builder.sign(self._key, _supported(algorithm))


def option_path(name: str, options: Mapping[str, Any], option: str, data_dir: Path) -> Path:
    """The file an option names, relative to *data_dir* unless absolute."""
    value = options.get(option)
    if not isinstance(value, str) or not value:
        raise PermanentCAError(f"CA connector {name!r}: option {option!r} is required")
    return data_dir / value


def read_file(name: str, path: Path) -> bytes:
    """The bytes of a CA file, or PermanentCAError."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise PermanentCAError(
            f"CA connector {name!r}: cannot read {path}: {exc.strerror}"
        ) from None


def decrypt_key(name: str, data: bytes, path: Path, passphrase: bytes) -> PrivateKey:
    """Decrypt a CA key; errors never repeat the passphrase."""
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError:
        raise PermanentCAError(
            f"CA connector {name!r}: the CA key {path} is not encrypted; CA keys must be "
            "encrypted at rest"
        ) from None
    except ValueError:
        raise PermanentCAError(
            f"CA connector {name!r}: cannot decrypt the CA key {path} "
            "(wrong CA passphrase, or not a PEM private key)"
        ) from None
    except UnsupportedAlgorithm:
        raise PermanentCAError(f"CA connector {name!r}: unsupported CA key type") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise PermanentCAError(f"CA connector {name!r}: the CA key must be RSA or EC")
    return key


def _supported(algorithm: hashes.HashAlgorithm) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
    """The hash, if a CA may sign with it."""
    if isinstance(algorithm, hashes.SHA256 | hashes.SHA384 | hashes.SHA512):
        return algorithm
    raise PermanentCAError(f"a CA does not sign with {algorithm.name}")
