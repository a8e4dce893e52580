"""Create a local CA: a self-signed root, or a key and a CSR for the organisation's root."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy.exc import IntegrityError

from services.ca_worker.connectors.base import CAError
from services.ca_worker.keystores import (
    DEFAULT_KEY_STORE,
    KEY_STORES,
    CAKey,
    close_ca_key,
    load_ca_key,
)
from services.ca_worker.keystores.file import FileCAKey
from shared.ca_material import AWAITING_INSTALL
from shared.config import Settings
from shared.db.models import CAConnector
from shared.db.session import Database
from shared.files import private_dir
from shared.pki import (
    KEY_TYPES,
    PrivateKey,
    cert_pem,
    generate_private_key,
    parse_subject,
    signature_hash,
)

CA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
CLOCK_SKEW = timedelta(minutes=5)
CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


class CAExistsError(Exception):
    """A CA connector or CA directory of that name already exists."""


@dataclass(frozen=True)
class CARequest:
    """A CA awaiting its certificate: its connector row and the CSR for the root to sign."""

    connector: CAConnector
    csr: str  # PEM


async def create_local_ca(
    settings: Settings,
    db: Database,
    name: str,
    *,
    subject: str | None = None,
    key_type: str = "ec-p256",
    days: int = 3650,
    key_store: str = DEFAULT_KEY_STORE,
    pkcs11_uri: str = "",
    pkcs11_pin_file: str = "",
) -> CAConnector:
    """Create the self-signed root CA *name*; never overwrite an existing one."""
    check_name(name)
    if days <= 0:
        raise ValueError("days: must be positive")
    ca_subject = parse_subject(subject if subject is not None else f"/CN={name}")
    options, passphrase = _key_options(
        settings, name, key_store, key_type, pkcs11_uri, pkcs11_pin_file
    )
    async with claim(settings, db, name) as (ca_dir, written):
        key = await _make_key(settings, name, options, key_type, passphrase, ca_dir, written)
        try:
            cacert = await asyncio.to_thread(_self_signed, key, ca_subject, days)
        finally:
            await asyncio.to_thread(close_ca_key, key)
        write_new(ca_dir / "cacert.pem", cacert.encode(), written)
        row = CAConnector(name=name, type="local", options=options, cacert=cacert)
        async with db.write() as session:
            session.add(row)
    return row


async def create_ca_request(
    settings: Settings,
    db: Database,
    name: str,
    *,
    subject: str | None = None,
    key_type: str = "ec-p256",
    key_store: str = DEFAULT_KEY_STORE,
    pkcs11_uri: str = "",
    pkcs11_pin_file: str = "",
) -> CARequest:
    """Make CA *name*'s key and a CSR for the organisation's root; the CA is not ready yet."""
    check_name(name)
    ca_subject = parse_subject(subject if subject is not None else f"/CN={name}")
    options, passphrase = _key_options(
        settings, name, key_store, key_type, pkcs11_uri, pkcs11_pin_file
    )
    options[AWAITING_INSTALL] = True
    async with claim(settings, db, name) as (ca_dir, written):
        key = await _make_key(settings, name, options, key_type, passphrase, ca_dir, written)
        try:
            csr = await asyncio.to_thread(_build_csr, key, ca_subject)
        finally:
            await asyncio.to_thread(close_ca_key, key)
        write_new(ca_dir / "ca.csr", csr.encode(), written)
        row = CAConnector(name=name, type="local", options=options, cacert="")
        async with db.write() as session:
            session.add(row)
    return CARequest(row, csr)


def _key_options(
    settings: Settings,
    name: str,
    key_store: str,
    key_type: str,
    pkcs11_uri: str,
    pkcs11_pin_file: str,
) -> tuple[dict[str, Any], bytes]:
    """The connector options of a new CA's key store, and the CA passphrase (file store)."""
    options: dict[str, Any] = {"cacert": f"ca/{name}/cacert.pem"}
    if key_store == "file":
        _check_key_type(key_type)
        options["cakey"] = f"ca/{name}/cakey.pem"
        return options, ca_passphrase(settings)
    if key_store != "pkcs11":
        raise ValueError(f"key_store: unknown {key_store!r}; choose one of {', '.join(KEY_STORES)}")
    if not pkcs11_uri.startswith("pkcs11:"):
        raise ValueError("pkcs11_uri: a PKCS#11 URI (RFC 7512) is required, 'pkcs11:...'")
    options.update(key_store="pkcs11", pkcs11_uri=pkcs11_uri)
    if pkcs11_pin_file:
        options["pkcs11_pin_file"] = pkcs11_pin_file
    return options, settings.resolved_ca_passphrase


async def _make_key(
    settings: Settings,
    name: str,
    options: dict[str, Any],
    key_type: str,
    passphrase: bytes,
    ca_dir: Path,
    written: list[Path],
) -> CAKey:
    """A file key made and stored now, or the PKCS#11 key the options name.

    A PKCS#11 key is the token's key the URI names, made there when missing; it never leaves
    the token.
    """
    if options.get("key_store", DEFAULT_KEY_STORE) == "file":
        key_pem = await asyncio.to_thread(_new_key_pem, key_type, passphrase)
        write_new(ca_dir / "cakey.pem", key_pem, written)
    else:
        _check_key_type(key_type)
        made = await asyncio.to_thread(_token_key, name, options, settings.data_dir, key_type)
        if made is not None:
            return made
    try:
        return await asyncio.to_thread(load_ca_key, name, options, settings.data_dir, passphrase)
    except CAError as exc:
        raise ValueError(str(exc)) from None


def _token_key(name: str, options: dict[str, Any], data_dir: Path, key_type: str) -> CAKey | None:
    """The token's key, made there first when missing; None without the pkcs11 extra."""
    try:
        from services.ca_worker.keystores.pkcs11 import generate_pkcs11_key
    except ImportError:
        return None  # load_ca_key says what is missing
    try:
        return generate_pkcs11_key(name, options, data_dir, key_type)[0]
    except CAError as exc:
        raise ValueError(str(exc)) from None


def check_name(name: str) -> None:
    """Refuse a name that is no valid CA connector name."""
    if not CA_NAME.fullmatch(name):
        raise ValueError(
            f"name: {name!r} is not a valid CA name (letters, digits, '_', '.', '-'; "
            "1-63 characters; starting with a letter or digit)"
        )


def _check_key_type(key_type: str) -> None:
    if key_type not in KEY_TYPES:
        raise ValueError(f"key_type: unknown {key_type!r}; choose one of {', '.join(KEY_TYPES)}")


def ca_passphrase(settings: Settings) -> bytes:
    """The passphrase CA key files are encrypted under; ValueError when there is none."""
    passphrase = settings.resolved_ca_passphrase
    if not passphrase:
        raise ValueError("the CA passphrase is empty")
    return passphrase


@contextlib.asynccontextmanager
async def claim(
    settings: Settings, db: Database, name: str
) -> AsyncIterator[tuple[Path, list[Path]]]:
    """Claim CA *name* (its directory, exclusively); on failure remove what was written."""
    async with db.read() as session:
        if await session.get(CAConnector, name) is not None:
            raise CAExistsError(f"CA connector {name!r} already exists")
    ca_dir = settings.ca_dir / name
    private_dir(settings.data_dir)
    private_dir(settings.ca_dir)
    try:
        # An exclusive mkdir claims the name on disk, also against a concurrent creator.
        ca_dir.mkdir(mode=0o700)
    except FileExistsError:
        raise CAExistsError(f"CA directory {ca_dir} already exists") from None
    written: list[Path] = []
    try:
        yield ca_dir, written
    except IntegrityError:
        _remove(written, ca_dir)
        raise CAExistsError(f"CA connector {name!r} already exists") from None
    except BaseException:
        _remove(written, ca_dir)
        raise


def _build_root(
    key_type: str, subject: x509.Name, days: int, passphrase: bytes
) -> tuple[bytes, str]:
    """A new key (encrypted PEM) and its self-signed CA certificate (PEM)."""
    key = generate_private_key(key_type)
    return encrypted_pem(key, passphrase), _self_signed(FileCAKey(key), subject, days)


def _self_signed(key: CAKey, subject: x509.Name, days: int) -> str:
    """The self-signed CA certificate of *key* (PEM)."""
    public_key = key.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ValueError("key: a CA key must be RSA or EC")
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    now = datetime.now(UTC).replace(microsecond=0)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )
    return cert_pem(key.sign_certificate(builder, signature_hash(public_key)))


def _new_key_pem(key_type: str, passphrase: bytes) -> bytes:
    """A new CA key, PKCS#8 PEM encrypted under *passphrase*."""
    return encrypted_pem(generate_private_key(key_type), passphrase)


def encrypted_pem(key: PrivateKey, passphrase: bytes) -> bytes:
    """*key* as PKCS#8 PEM encrypted under *passphrase* (the file key store's format)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )


def _build_csr(key: CAKey, subject: x509.Name) -> str:
    """A CSR for a CA certificate: subject, CA basic constraints and key usage requested."""
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
    )
    csr = key.sign_csr(builder, signature_hash(key.public_key()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def write_new(path: Path, data: bytes, written: list[Path]) -> None:
    """Write *data* to an owner-only file that must not exist yet."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    written.append(path)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _remove(written: list[Path], ca_dir: Path) -> None:
    """Undo a failed creation: only what this call wrote."""
    for path in written:
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        ca_dir.rmdir()
