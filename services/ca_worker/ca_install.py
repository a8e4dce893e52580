"""Complete a CA with its certificate from the organisation's root, or adopt an existing CA."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from services.ca_worker.ca_create import (
    ca_passphrase,
    check_name,
    claim,
    encrypted_pem,
    write_new,
)
from services.ca_worker.connectors.base import PermanentCAError
from services.ca_worker.keystores import close_ca_key, load_ca_key
from shared.ca_material import AWAITING_INSTALL, CHAIN, pending_rollover
from shared.config import Settings
from shared.db.models import CAConnector
from shared.db.session import Database
from shared.files import write_private
from shared.pki import PrivateKey, cert_pem

MAX_PEM_BYTES = 1024 * 1024
MAX_CHAIN_LENGTH = 10


class InstallError(ValueError):
    """The certificate (or key, or chain) cannot complete the CA; nothing was changed."""


@dataclass(frozen=True)
class Checked:
    """A CA certificate that passed the checks, and the chain above it (issuer first)."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]

    @property
    def chain_pem(self) -> str:
        """The certificates above the CA as one PEM bundle ("" for a root)."""
        return "".join(cert_pem(c) for c in self.chain)


def read_certificates(field: str, data: bytes) -> list[x509.Certificate]:
    """Every PEM certificate in *data*; InstallError naming *field* otherwise."""
    if len(data) > MAX_PEM_BYTES:
        raise InstallError(f"{field}: larger than {MAX_PEM_BYTES // 1024} KiB")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except (ValueError, x509.InvalidVersion):
        raise InstallError(f"{field}: not PEM-encoded X.509 certificates") from None
    return certs


def check_ca_certificate(
    cert: x509.Certificate,
    key: CertificatePublicKeyTypes,
    chain: list[x509.Certificate],
    now: datetime | None = None,
) -> Checked:
    """Check *cert*: a CA certificate of *key*, valid now, chaining to a root in *chain*."""
    if cert.public_key() != key:
        raise InstallError(
            "cert: its public key is not the CA's key (a certificate of another key)"
        )
    moment = now or datetime.now(UTC)
    _check_ca("cert", cert, moment)
    path: list[x509.Certificate] = []
    current = cert
    while not _self_issued(current):
        issuer = _issuer_of(current, chain)
        if issuer is None:
            who = "it" if current is cert else repr(current.subject.rfc4514_string())
            raise InstallError(
                f"cert: does not chain to a self-signed root: no certificate in the chain issued "
                f"{who} (issuer {current.issuer.rfc4514_string()!r}); give the root and any "
                "intermediates with --chain"
            )
        _check_ca("chain", issuer, moment)
        if issuer in path or len(path) >= MAX_CHAIN_LENGTH:
            raise InstallError("chain: loops or is longer than 10 certificates")
        path.append(issuer)
        current = issuer
    return Checked(cert, tuple(path))


def _check_ca(field: str, cert: x509.Certificate, now: datetime) -> None:
    """Refuse a certificate that may not sign certificates now."""
    who = "" if field == "cert" else f" {cert.subject.rfc4514_string()!r}"
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise InstallError(
            f"{field}:{who} is not a CA certificate (basicConstraints cA is not set)"
        )
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.key_cert_sign:
        raise InstallError(f"{field}:{who} may not sign certificates (keyUsage lacks keyCertSign)")
    if field == "cert":
        # certtoken's CA signs certificates and CRLs: both usages must be there.
        if usage is None:
            raise InstallError("cert: has no keyUsage extension (keyCertSign and cRLSign needed)")
        if not usage.crl_sign:
            raise InstallError("cert: may not sign CRLs (keyUsage lacks cRLSign)")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise InstallError(
            f"{field}:{who} is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d %H:%M} "
            f"to {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC)"
        )


def _self_issued(cert: x509.Certificate) -> bool:
    """Whether *cert* is a root: issued and signed by its own key."""
    return cert.issuer == cert.subject and _signed_by(cert, cert)


def _issuer_of(cert: x509.Certificate, chain: list[x509.Certificate]) -> x509.Certificate | None:
    """The certificate of *chain* whose key signed *cert*."""
    for candidate in chain:
        if candidate.subject == cert.issuer and _signed_by(cert, candidate):
            return candidate
    return None


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


async def check_issued(
    settings: Settings,
    name: str,
    key_options: Mapping[str, Any],
    cert_data: bytes,
    chain_data: bytes,
) -> Checked:
    """The root's certificate for the key *key_options* name, checked with its chain."""
    certs = read_certificates("cert", cert_data)
    if len(certs) != 1:
        raise InstallError("cert: give exactly one certificate (the chain goes in --chain)")
    chain = read_certificates("chain", chain_data) if chain_data.strip() else []
    try:
        key = await asyncio.to_thread(
            load_ca_key, name, key_options, settings.data_dir, settings.resolved_ca_passphrase
        )
    except PermanentCAError as exc:
        raise InstallError(str(exc)) from None
    try:
        public_key = key.public_key()
    finally:
        await asyncio.to_thread(close_ca_key, key)
    return check_ca_certificate(certs[0], public_key, chain)


async def install_ca(
    settings: Settings, db: Database, name: str, cert_data: bytes, chain_data: bytes = b""
) -> CAConnector:
    """Install the certificate the root issued for CA *name* (or for its pending rollover's
    key); then it is ready."""
    async with db.read() as session:
        row = await session.get(CAConnector, name)
    if row is None or row.type != "local":
        raise InstallError(f"name: no local CA connector named {name!r}")
    if pending_rollover(row.options) is not None:
        from services.ca_worker.ca_rollover import complete_rollover

        return await complete_rollover(settings, db, name, cert_data, chain_data)
    if not row.options.get(AWAITING_INSTALL):
        raise InstallError(f"name: CA {name!r} has its certificate already (nothing to install)")
    checked = await check_issued(settings, name, row.options, cert_data, chain_data)
    pem = cert_pem(checked.certificate)
    cacert_path = settings.data_dir / str(row.options.get("cacert") or f"ca/{name}/cacert.pem")
    await asyncio.to_thread(write_private, cacert_path, pem.encode())
    options = {k: v for k, v in row.options.items() if k != AWAITING_INSTALL}
    options["cacert"] = str(row.options.get("cacert") or f"ca/{name}/cacert.pem")
    if checked.chain:
        options[CHAIN] = checked.chain_pem
    async with db.write() as session:
        current = await session.get(CAConnector, name, with_for_update=True)
        if current is None or not current.options.get(AWAITING_INSTALL):
            raise InstallError(f"name: CA {name!r} changed meanwhile; nothing installed")
        current.options = options
        current.cacert = pem
    return current


def read_key(data: bytes, passphrase: bytes | None) -> PrivateKey:
    """An existing CA's private key (PKCS#8 or traditional PEM, encrypted or not)."""
    if len(data) > MAX_PEM_BYTES:
        raise InstallError(f"key: larger than {MAX_PEM_BYTES // 1024} KiB")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase or None)
    except TypeError:
        if passphrase:
            raise InstallError("key: is not encrypted, but a passphrase was given") from None
        raise InstallError(
            "key: is encrypted; give its passphrase (--key-passphrase-file, or run in a terminal)"
        ) from None
    except ValueError:
        raise InstallError(
            "key: cannot read it (wrong passphrase, or not a PEM private key)"
        ) from None
    except UnsupportedAlgorithm:
        raise InstallError("key: unsupported key type or encryption") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise InstallError("key: a CA key must be RSA or EC")
    return key


async def import_ca(
    settings: Settings,
    db: Database,
    name: str,
    cert_data: bytes,
    key_data: bytes,
    chain_data: bytes = b"",
    key_passphrase: bytes | None = None,
) -> CAConnector:
    """Adopt an existing CA: its key is stored re-encrypted under certtoken's CA passphrase."""
    check_name(name)
    passphrase = ca_passphrase(settings)
    certs = read_certificates("cert", cert_data)
    if len(certs) != 1:
        raise InstallError("cert: give exactly one certificate (the chain goes in --chain)")
    chain = read_certificates("chain", chain_data) if chain_data.strip() else []
    key = await asyncio.to_thread(read_key, key_data, key_passphrase)
    checked = check_ca_certificate(certs[0], key.public_key(), chain)
    pem = cert_pem(checked.certificate)
    options: dict[str, object] = {
        "key_store": "file",
        "cakey": f"ca/{name}/cakey.pem",
        "cacert": f"ca/{name}/cacert.pem",
    }
    if checked.chain:
        options[CHAIN] = checked.chain_pem
    async with claim(settings, db, name) as (ca_dir, written):
        key_pem = await asyncio.to_thread(encrypted_pem, key, passphrase)
        write_new(ca_dir / "cakey.pem", key_pem, written)
        write_new(ca_dir / "cacert.pem", pem.encode(), written)
        row = CAConnector(name=name, type="local", options=options, cacert=pem)
        async with db.write() as session:
            session.add(row)
    return row
