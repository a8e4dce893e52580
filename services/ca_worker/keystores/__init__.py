"""Where a CA's signing key lives: the CAKey interface and the choice of key store."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from services.ca_worker.connectors.base import PermanentCAError

KEY_STORES = ("file", "pkcs11")
DEFAULT_KEY_STORE = "file"


class CAKey(Protocol):
    """A CA's signing key, wherever it lives (an encrypted file, a PKCS#11 token)."""

    def public_key(self) -> CertificatePublicKeyTypes: ...

    @property
    def signs_quickly(self) -> bool:
        """Whether a signature costs less than handing the work to a thread and back."""
        ...

    def sign_certificate(
        self, builder: x509.CertificateBuilder, algorithm: hashes.HashAlgorithm
    ) -> x509.Certificate: ...

    def sign_crl(
        self, builder: x509.CertificateRevocationListBuilder, algorithm: hashes.HashAlgorithm
    ) -> x509.CertificateRevocationList: ...

    def sign_csr(
        self, builder: x509.CertificateSigningRequestBuilder, algorithm: hashes.HashAlgorithm
    ) -> x509.CertificateSigningRequest: ...


def key_store_of(name: str, options: Mapping[str, Any]) -> str:
    """The key store a connector's options name (``file`` unless set)."""
    store = options.get("key_store", DEFAULT_KEY_STORE)
    if store not in KEY_STORES:
        raise PermanentCAError(
            f"CA connector {name!r}: key_store {store!r} is unknown; "
            f"choose one of {', '.join(KEY_STORES)}"
        )
    return str(store)


def load_ca_key(name: str, options: Mapping[str, Any], data_dir: Path, passphrase: bytes) -> CAKey:
    """The signing key of CA connector *name*, from the store its option ``key_store`` names."""
    if key_store_of(name, options) == "pkcs11":
        try:
            module = importlib.import_module("services.ca_worker.keystores.pkcs11")
        except ImportError as exc:
            raise PermanentCAError(
                f"CA connector {name!r}: the pkcs11 key store is not available here ({exc.msg})"
            ) from None
        key: CAKey = module.load_pkcs11_key(name, options, data_dir)
        return key
    from services.ca_worker.keystores.file import FileCAKey

    return FileCAKey.load(name, options, data_dir, passphrase)


def close_ca_key(key: CAKey) -> None:
    """Release what a key holds open (a token session); a file key holds nothing."""
    close = getattr(key, "close", None)
    if callable(close):
        close()
