"""``certtoken backup``: one encrypted archive of everything a restore needs, taken live.

The archive (services.maintenance.archive) holds a tar of ``manifest.json`` (first), the
database copy (services.maintenance.dbcopy), the secret keyring, the CA passphrase, the
response-signing key and every file under ``data/ca``. The database is copied first and the
CA files after it, so every CA the copy names has its files (a CA made meanwhile only adds
files). The keyring is read before and after the copy and the archive keeps both, so a
rotation running meanwhile cannot leave the copy's secrets without their key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services import __version__
from services.api.signing import key_path
from services.maintenance.archive import FORMAT, EncryptingWriter, open_output
from services.maintenance.dbcopy import (
    Snapshot,
    kind_of,
    snapshot_postgresql,
    snapshot_sqlite,
)
from shared.config import Settings
from shared.files import sqlite_path
from shared.keyring import keys_of, ring_text

MANIFEST = "manifest.json"
SECRET_KEY = "secrets/secret_key"
CA_PASSPHRASE = "secrets/ca_passphrase"
SIGNING_KEY = "secrets/response_signing_key.pem"
CA_PREFIX = "ca/"

Progress = Callable[[str], None]


class BackupError(Exception):
    """The backup cannot be made; nothing was written."""


def secret_key_text(settings: Settings) -> str | None:
    """The keyring as configured, never created here; None when there is none yet."""
    if settings.secret_key:
        return settings.secret_key
    path = settings.secret_key_path
    if path is None or not path.exists():
        return None
    return path.read_text()


def ca_passphrase_text(settings: Settings) -> str | None:
    """The CA passphrase as configured, never created here; None when there is none yet."""
    if settings.ca_passphrase:
        return settings.ca_passphrase
    path = settings.ca_passphrase_file or settings.data_dir / "ca_passphrase"
    return path.read_text().strip() if path.exists() else None


async def make_backup(
    settings: Settings, output: Path, passphrase: bytes, progress: Progress
) -> dict[str, Any]:
    """Write the archive of *settings*' installation to *output*; its manifest."""
    _check_output(output)
    before = secret_key_text(settings)
    url = settings.resolved_database_url
    workdir = Path(tempfile.mkdtemp(prefix=".certtoken-backup-", dir=output.parent))
    try:
        progress(f"copying the {kind_of(url)} database ...")
        snapshot = await _snapshot(url, workdir, progress)
        small = _small_members(settings, _keyring(before, secret_key_text(settings)))
        manifest = _manifest(snapshot, small)
        progress(f"encrypting {len(manifest['members'])} files into {output} ...")
        await asyncio.to_thread(_write, output, passphrase, manifest, snapshot, small)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return manifest


def _check_output(output: Path) -> None:
    if output.exists():
        raise BackupError(f"{output}: exists already; give a new file name")
    if not output.parent.is_dir():
        raise BackupError(f"{output.parent}: no such folder")


async def _snapshot(url: str, workdir: Path, progress: Progress) -> Snapshot:
    if kind_of(url) == "sqlite":
        database = sqlite_path(url)
        if database is None or not database.exists():
            raise BackupError(f"database: no SQLite file at {url}")
        return await asyncio.to_thread(snapshot_sqlite, database, workdir)
    return await snapshot_postgresql(url, workdir, progress)


def _keyring(before: str | None, after: str | None) -> str | None:
    """The keyring read after the copy, with any key read before it that it lacks."""
    if after is None or before is None:
        # None yet (made on the first start): nothing in the copy is sealed.
        return after
    keys = keys_of(after)
    return ring_text(keys + [key for key in keys_of(before) if key not in keys])


def _small_members(settings: Settings, keyring: str | None) -> dict[str, bytes]:
    """Secrets and CA files, read once (hashed and archived from the same bytes)."""
    members = {} if keyring is None else {SECRET_KEY: keyring.encode()}
    passphrase = ca_passphrase_text(settings)
    if passphrase is not None:
        members[CA_PASSPHRASE] = passphrase.encode() + b"\n"
    signing = key_path(settings)
    if signing.is_file():
        members[SIGNING_KEY] = signing.read_bytes()
    if settings.ca_dir.is_dir():
        for path in sorted(settings.ca_dir.rglob("*")):
            if path.is_file() and not path.is_symlink():
                members[CA_PREFIX + path.relative_to(settings.ca_dir).as_posix()] = (
                    path.read_bytes()
                )
    return members


def _manifest(snapshot: Snapshot, small: dict[str, bytes]) -> dict[str, Any]:
    members: dict[str, dict[str, Any]] = {}
    for name, path in snapshot.files.items():
        members[name] = {"sha256": _file_sha256(path), "size": path.stat().st_size}
    for name, data in small.items():
        members[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    return {
        "format": FORMAT,
        "certtoken": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": {
            "kind": snapshot.kind,
            "revision": snapshot.revision,
            "tables": snapshot.counts,
        },
        "members": members,
    }


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _write(
    output: Path,
    passphrase: bytes,
    manifest: dict[str, Any],
    snapshot: Snapshot,
    small: dict[str, bytes],
) -> None:
    """Encrypt the tar into a temporary file beside *output*, then link it there."""
    out, temporary = open_output(output)
    try:
        with out:
            writer = EncryptingWriter(out, passphrase)
            with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                _add(tar, MANIFEST, json.dumps(manifest, indent=1).encode())
                for name, path in snapshot.files.items():
                    with path.open("rb") as fh:
                        tar.addfile(_info(name, path.stat().st_size), fh)
                for name, data in small.items():
                    _add(tar, name, data)
            writer.finish()
            out.flush()
            os.fsync(out.fileno())
        try:
            # link, not rename: an archive that appeared meanwhile is never replaced.
            os.link(temporary, output)
        except FileExistsError:
            raise BackupError(f"{output}: exists already; give a new file name") from None
        directory = os.open(output.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_info(name, len(data)), io.BytesIO(data))


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = int(datetime.now(UTC).timestamp())
    return info
