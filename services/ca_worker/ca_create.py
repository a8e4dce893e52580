"""Create a local root CA: key and certificate on disk, connector row in the database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy.exc import IntegrityError

from shared.config import Settings
from shared.db.models import CAConnector
from shared.db.session import Database
from shared.files import private_dir
from shared.pki import KEY_TYPES, cert_pem, generate_private_key, parse_subject, signature_hash_for

CA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
CLOCK_SKEW = timedelta(minutes=5)


class CAExistsError(Exception):
    """A CA connector or CA directory of that name already exists."""


async def create_local_ca(
    settings: Settings,
    db: Database,
    name: str,
    *,
    subject: str | None = None,
    key_type: str = "ec-p256",
    days: int = 3650,
) -> CAConnector:
    """Create the self-signed root CA *name*; never overwrite an existing one."""
    if not CA_NAME.fullmatch(name):
        raise ValueError(
            f"name: {name!r} is not a valid CA name (letters, digits, '_', '.', '-'; "
            "1-63 characters; starting with a letter or digit)"
        )
    if key_type not in KEY_TYPES:
        raise ValueError(f"key_type: unknown {key_type!r}; choose one of {', '.join(KEY_TYPES)}")
    if days <= 0:
        raise ValueError("days: must be positive")
    ca_subject = parse_subject(subject if subject is not None else f"/CN={name}")
    passphrase = settings.resolved_ca_passphrase
    if not passphrase:
        raise ValueError("the CA passphrase is empty")

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
        key_pem, cacert = await asyncio.to_thread(
            _build_root, key_type, ca_subject, days, passphrase
        )
        _write_new(ca_dir / "cakey.pem", key_pem, 0o600, written)
        _write_new(ca_dir / "cacert.pem", cacert.encode(), 0o600, written)
        row = CAConnector(
            name=name,
            type="local",
            options={"cakey": f"ca/{name}/cakey.pem", "cacert": f"ca/{name}/cacert.pem"},
            cacert=cacert,
        )
        async with db.write() as session:
            session.add(row)
    except IntegrityError:
        _remove(written, ca_dir)
        raise CAExistsError(f"CA connector {name!r} already exists") from None
    except BaseException:
        _remove(written, ca_dir)
        raise
    return row


def _build_root(
    key_type: str, subject: x509.Name, days: int, passphrase: bytes
) -> tuple[bytes, str]:
    """A new key (encrypted PEM) and its self-signed CA certificate (PEM)."""
    key = generate_private_key(key_type)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    now = datetime.now(UTC).replace(microsecond=0)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, signature_hash_for(key))
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )
    return key_pem, cert_pem(cert)


def _write_new(path: Path, data: bytes, mode: int, written: list[Path]) -> None:
    """Write *data* to a file that must not exist yet."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    written.append(path)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _remove(written: list[Path], ca_dir: Path) -> None:
    """Undo a failed creation: only what this call wrote."""
    for path in written:
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        ca_dir.rmdir()
