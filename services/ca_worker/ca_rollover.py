"""Roll a local CA over: a new key and certificate for the same connector, the old kept answering.

The current generation's key and certificate stay in the connector row; the one a rollover
replaces moves to a ``ca_generation`` row with its CRL and OCSP responder, where the ca_worker
keeps publishing for it until none of its certificates is unexpired.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import update

from services.ca_worker.ca_create import (
    _build_csr,
    _key_options,
    _make_key,
    _self_signed,
    check_name,
)
from services.ca_worker.ca_install import InstallError, check_issued
from services.ca_worker.keystores import close_ca_key
from shared.ca_keyids import subject_key_id
from shared.ca_material import (
    AWAITING_INSTALL,
    CHAIN,
    GENERATION,
    ROLLOVER,
    chain_pems,
    generation_of,
    not_ready_reason,
    pending_rollover,
)
from shared.config import Settings
from shared.db.models import CAConnector, CAGeneration, CAPublication, IssuedCertificate, utcnow
from shared.db.session import Database
from shared.files import private_dir, write_private
from shared.pki import cert_pem, load_certificate, parse_subject

# The options that belong to one generation's key and certificate; the rest is the connector's.
KEY_OPTIONS = ("cacert", "cakey", "key_store", "pkcs11_uri", "pkcs11_pin_file", CHAIN)


class RolloverError(InstallError):
    """The rollover cannot be done; nothing was changed."""


@dataclass(frozen=True)
class Rollover:
    """What a rollover did: the generation made, and its CSR when the root must sign."""

    generation: int
    csr: str = ""  # PEM; empty when the new generation is active already
    cacert: str = ""  # PEM of the new CA certificate once active


async def rollover_ca(
    settings: Settings,
    db: Database,
    name: str,
    *,
    subject: str | None = None,
    key_type: str | None = None,
    days: int = 3650,
    key_store: str | None = None,
    pkcs11_uri: str = "",
    pkcs11_pin_file: str = "",
    csr: bool = False,
) -> Rollover:
    """Make CA *name*'s next key: self-signed and active now, or with a CSR for the root."""
    check_name(name)
    if days <= 0:
        raise RolloverError("days: must be positive")
    async with db.read() as session:
        row = await session.get(CAConnector, name)
    if row is None or row.type != "local":
        raise RolloverError(f"name: no local CA connector named {name!r}")
    if not_ready_reason(name, row.options) is not None:
        raise RolloverError(f"name: CA {name!r} is not installed yet (certtoken ca install)")
    if pending_rollover(row.options) is not None:
        raise RolloverError(
            f"name: a rollover of CA {name!r} awaits its certificate "
            f"(certtoken ca install {name} --cert FILE --chain FILE)"
        )
    current = load_certificate(row.cacert)
    under_root = bool(chain_pems(row.options)) or current.issuer != current.subject
    if under_root and not csr:
        raise RolloverError(
            f"csr_out: CA {name!r} is under the organisation's root: give --csr-out FILE for "
            "the root to sign, then certtoken ca install"
        )
    store = key_store or str(row.options.get("key_store", "file"))
    if store == "pkcs11" and pkcs11_uri == row.options.get("pkcs11_uri"):
        raise RolloverError("pkcs11_uri: names the current key; a rollover needs a new key")
    kind = key_type or _key_type_of(current)
    generation = generation_of(row.options) + 1
    new_subject = current.subject if subject is None else parse_subject(subject)
    try:
        options, passphrase = _key_options(settings, name, store, kind, pkcs11_uri, pkcs11_pin_file)
    except ValueError as exc:
        raise RolloverError(str(exc)) from None
    where = f"ca/{name}/generation-{generation}"
    options["cacert"] = f"{where}/cacert.pem"
    if "cakey" in options:
        options["cakey"] = f"{where}/cakey.pem"
    gen_dir = settings.data_dir / where
    private_dir(settings.ca_dir / name)
    try:
        gen_dir.mkdir(mode=0o700)
    except FileExistsError:
        raise RolloverError(f"name: {gen_dir} exists already (an interrupted rollover?)") from None
    written: list[Path] = []
    try:
        try:
            key = await _make_key(settings, name, options, kind, passphrase, gen_dir, written)
        except ValueError as exc:
            raise RolloverError(str(exc)) from None
        try:
            if key.public_key() == current.public_key():
                raise RolloverError("pkcs11_uri: names the current key; a rollover needs a new key")
            if csr:
                request = await asyncio.to_thread(_build_csr, key, new_subject)
                await asyncio.to_thread(write_private, gen_dir / "ca.csr", request.encode())
                written.append(gen_dir / "ca.csr")
                await _mark_pending(db, name, row.options, {**options, GENERATION: generation})
                return Rollover(generation, csr=request)
            pem = await asyncio.to_thread(_self_signed, key, new_subject, days)
        finally:
            await asyncio.to_thread(close_ca_key, key)
        await asyncio.to_thread(write_private, gen_dir / "cacert.pem", pem.encode())
        written.append(gen_dir / "cacert.pem")
        await activate(db, name, row.options, {**options, GENERATION: generation}, pem)
        return Rollover(generation, cacert=pem)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            gen_dir.rmdir()
        raise


async def complete_rollover(
    settings: Settings, db: Database, name: str, cert_data: bytes, chain_data: bytes
) -> CAConnector:
    """Install the root's certificate for a pending rollover's key; the new generation issues."""
    async with db.read() as session:
        row = await session.get(CAConnector, name)
    pending = pending_rollover(row.options) if row is not None else None
    if row is None or pending is None:
        raise InstallError(f"name: no rollover of CA {name!r} awaits its certificate")
    checked = await check_issued(settings, name, pending, cert_data, chain_data)
    pem = cert_pem(checked.certificate)
    await asyncio.to_thread(write_private, settings.data_dir / str(pending["cacert"]), pem.encode())
    if checked.chain:
        pending[CHAIN] = checked.chain_pem
    return await activate(db, name, row.options, pending, pem)


async def activate(
    db: Database,
    name: str,
    before: dict[str, Any],
    generation_options: dict[str, Any],
    pem: str,
) -> CAConnector:
    """Make the new generation current; keep the old one answering for what it issued."""
    now = utcnow()
    async with db.write() as session:
        row = await session.get(CAConnector, name, with_for_update=True)
        if row is None or generation_of(row.options) != generation_of(before):
            raise RolloverError(f"name: CA {name!r} changed meanwhile; nothing was changed")
        old_generation = generation_of(row.options)
        old_key_id = subject_key_id(load_certificate(row.cacert))
        # Rows recorded before key ids were kept are the outgoing generation's.
        await session.execute(
            update(IssuedCertificate)
            .where(IssuedCertificate.ca == name, IssuedCertificate.issuer_key_id.is_(None))
            .values(issuer_key_id=old_key_id)
        )
        old = CAGeneration(
            ca=name,
            generation=old_generation,
            cacert=row.cacert,
            key_id=old_key_id,
            options={
                **{k: v for k, v in row.options.items() if k in KEY_OPTIONS},
                GENERATION: old_generation,
            },
            superseded_at=now,
        )
        publication = await session.get(CAPublication, name, with_for_update=True)
        if publication is not None and publication.generation == old_generation:
            # Signed by the old key: they stay its CRL and responder.
            old.crl_number = publication.crl_number
            old.crl = publication.crl
            old.crl_this_update = publication.crl_this_update
            old.crl_next_update = publication.crl_next_update
            old.ocsp_cert = publication.ocsp_cert
            old.ocsp_key = publication.ocsp_key
            old.ocsp_not_after = publication.ocsp_not_after
        session.add(old)
        kept = {
            k: v
            for k, v in row.options.items()
            if k not in (*KEY_OPTIONS, GENERATION, ROLLOVER, AWAITING_INSTALL)
        }
        row.options = {**kept, **generation_options}
        row.cacert = pem
    return row


async def _mark_pending(
    db: Database, name: str, before: dict[str, Any], pending: dict[str, Any]
) -> None:
    """Record the next generation's key until `ca install`; the current key keeps issuing."""
    async with db.write() as session:
        row = await session.get(CAConnector, name, with_for_update=True)
        if row is None or row.options != before:
            raise RolloverError(f"name: CA {name!r} changed meanwhile; nothing was changed")
        row.options = {**row.options, ROLLOVER: pending}


def _key_type_of(cert: x509.Certificate) -> str:
    """The key type of the current CA certificate, as `--key-type` names it."""
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ec-p384" if key.curve.key_size > 256 else "ec-p256"
    if isinstance(key, rsa.RSAPublicKey):
        return f"rsa-{max(2048, min(4096, key.key_size))}"
    return "ec-p256"


def generation_state(row: CAGeneration) -> str:
    """How `certtoken ca list` reports an earlier generation."""
    if row.retired_at is not None:
        return f"retired {row.retired_at:%Y-%m-%d}: its certificates expired, no more CRLs or OCSP"
    return "answering for its certificates (CRL and OCSP) until the last of them expires"
