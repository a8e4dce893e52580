"""Signed answers as privacyIDEA signs them: RSA-PSS over SHA-256 of the sorted JSON body.

A client verifies an answer by removing its ``signature`` key, dumping the rest with
Python's ``json.dumps(body, sort_keys=True)`` (default separators, ASCII escapes) and
checking the hex signature after the ``rsa_sha256_pss:`` prefix with the public key that
``GET /signature/publickey`` serves. The private key is made on first start in the data
dir (owner-only) unless ``CERTTOKEN_RESPONSE_SIGNING_KEY_FILE`` names one.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.config import Settings
from shared.files import create_private, read_regular

SCHEME = "rsa_sha256_pss"
SIGNATURE_KEY = "signature"
KEY_FILE_NAME = "response_signing_key.pem"
PUBLIC_KEY_PATH = "/signature/publickey"
KEY_BITS = 2048
_MAX_KEY_BYTES = 64 * 1024
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)


def signed_text(body: dict[str, Any]) -> bytes:
    """The bytes a signature covers: the body without its signature, keys sorted."""
    content = {k: v for k, v in body.items() if k != SIGNATURE_KEY}
    return json.dumps(content, sort_keys=True).encode()


def verify(public_key: rsa.RSAPublicKey, body: dict[str, Any]) -> bool:
    """Whether *body* carries a valid ``signature`` by the key of *public_key*."""
    scheme, _, value = str(body.get(SIGNATURE_KEY, "")).partition(":")
    if scheme != SCHEME:
        return False
    try:
        public_key.verify(bytes.fromhex(value), signed_text(body), _PSS, hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


class ResponseSigner:
    """Signs answer bodies with one RSA private key."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self._key = key
        self.public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, body: dict[str, Any]) -> str:
        """The ``signature`` value for *body*."""
        return f"{SCHEME}:{self._key.sign(signed_text(body), _PSS, hashes.SHA256()).hex()}"


# The signer of the app answering the current request (set by its middleware).
current_signer: ContextVar[ResponseSigner | None] = ContextVar("current_signer", default=None)


class SigningMiddleware:
    """Makes the app's signer the one its answers are signed with."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # Not reset afterwards: the outermost error handler renders its 500 answer after
            # this returns, in the same request task (each request has its own context).
            current_signer.set(getattr(scope["app"].state, "signer", None))
        await self.app(scope, receive, send)


def key_path(settings: Settings) -> Path:
    """Where the signing key is: the file the settings name, else in the data dir."""
    return settings.response_signing_key_file or settings.data_dir / KEY_FILE_NAME


def signer_for(settings: Settings) -> ResponseSigner | None:
    """The signer the settings ask for (its key made on first start); None when off."""
    return load_signer(key_path(settings)) if settings.response_signing else None


def load_signer(path: Path) -> ResponseSigner:
    """The signer whose RSA key is in *path*, the key made there (owner-only) when missing."""
    try:
        pem = read_regular(path, _MAX_KEY_BYTES)
    except FileNotFoundError:
        pem = _create_key(path)
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path.name}: not an RSA private key")
    return ResponseSigner(key)


def _create_key(path: Path) -> bytes:
    """A new key written to *path*; the existing one when another process was first."""
    pem = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # api processes sharing the data dir all end up with the first key.
    if create_private(path, pem):
        return pem
    return read_regular(path, _MAX_KEY_BYTES)
