"""``certtoken restore``: a backup back into an empty data dir and an empty database.

The whole archive is decrypted and checked (every chunk authenticated, every member's SHA-256
and size as the manifest says, the database's revision known to this certtoken) into a private
temporary folder before anything is written; then the target must be empty, else nothing is
changed. The database goes first (an SQLite copy into SQLite as its file, anything else row by
row into the schema of the backup's revision), its row counts are checked against the manifest,
then the secrets and CA files are written and the migrations brought to the latest revision.
A failure while writing removes what this restore wrote.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from alembic.script import ScriptDirectory
from alembic.util import CommandError as AlembicError

from services.api.signing import key_path
from services.maintenance.archive import ArchiveError, DecryptingReader
from services.maintenance.backup import (
    CA_PASSPHRASE,
    CA_PREFIX,
    MANIFEST,
    SECRET_KEY,
    SIGNING_KEY,
)
from services.maintenance.dbcopy import (
    SQLITE_MEMBER,
    TABLES_DIR,
    after_load,
    drop_everything,
    is_empty,
    jsonl_rows,
    kind_of,
    load_rows,
    place_sqlite,
    sqlite_facts,
    sqlite_rows,
)
from shared.config import Settings
from shared.db.migrate import alembic_config, upgrade
from shared.files import private_dir, sqlite_path, write_private

Progress = Callable[[str], None]
_MAX_MANIFEST = 1 << 20


class RestoreError(Exception):
    """The restore cannot be done; the target was left as it was."""


async def restore(settings: Settings, archive: Path, passphrase: bytes, progress: Progress) -> None:
    """Restore *archive* into the data dir and database *settings* name."""
    url = settings.resolved_database_url
    staging = _staging(settings, archive)
    try:
        progress(f"decrypting and checking {archive} ...")
        manifest = _unpack(archive, passphrase, staging)
        revision = _check_manifest(manifest, url)
        placements = _placements(settings, staging, manifest)
        await _check_empty(settings, url, placements)
        await _write(settings, url, staging, manifest, revision, placements, progress)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _staging(settings: Settings, archive: Path) -> Path:
    """A private folder for the decrypted archive, beside the data dir when possible."""
    if not archive.is_file():
        raise RestoreError(f"{archive}: no such file")
    parent = settings.data_dir.resolve().parent
    where = parent if parent.is_dir() else None
    return Path(tempfile.mkdtemp(prefix=".certtoken-restore-", dir=where))


def _unpack(archive: Path, passphrase: bytes, staging: Path) -> dict[str, Any]:
    """Decrypt the archive into *staging*; its manifest after every member checked."""
    seen: dict[str, tuple[str, int]] = {}
    manifest: dict[str, Any] | None = None
    try:
        with archive.open("rb") as source:
            reader = io.BufferedReader(DecryptingReader(source, passphrase), 1 << 20)
            with tarfile.open(fileobj=reader, mode="r|") as tar:
                for member in tar:
                    name = _safe_name(member)
                    data = tar.extractfile(member)
                    assert data is not None
                    if manifest is None:
                        if name != MANIFEST or member.size > _MAX_MANIFEST:
                            raise RestoreError("damaged backup: it does not start with a manifest")
                        manifest = json.loads(data.read())
                        continue
                    seen[name] = _extract(data, staging / name)
            reader.read()
    except (tarfile.TarError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RestoreError(f"damaged backup: {exc}") from None
    except ArchiveError as exc:
        raise RestoreError(str(exc)) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("members"), dict):
        raise RestoreError("damaged backup: no manifest")
    listed = {
        name: (str(entry.get("sha256")), int(entry.get("size", -1)))
        for name, entry in manifest["members"].items()
    }
    if listed != seen:
        missing = sorted(set(listed) - set(seen))
        different = sorted(n for n in seen if n in listed and listed[n] != seen[n])
        unlisted = sorted(set(seen) - set(listed))
        raise RestoreError(
            "the backup's files differ from its manifest"
            f" (missing {missing}, changed {different}, unlisted {unlisted})"
        )
    return manifest


def _safe_name(member: tarfile.TarInfo) -> str:
    path = PurePosixPath(member.name)
    if not member.isfile() or path.is_absolute() or ".." in path.parts or not path.parts:
        raise RestoreError(f"damaged backup: unexpected member {member.name!r}")
    return path.as_posix()


def _extract(data: Any, target: Path) -> tuple[str, int]:
    """Write one member owner-only to *target*; its SHA-256 and size."""
    private_dir(target.parent)
    digest, size = hashlib.sha256(), 0
    with target.open("xb") as out:
        target.chmod(0o600)
        while chunk := data.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    return digest.hexdigest(), size


def _check_manifest(manifest: dict[str, Any], url: str) -> str:
    """The backup's database revision, known to this certtoken; RestoreError else."""
    database = manifest.get("database") or {}
    revision = database.get("revision")
    if not isinstance(revision, str) or not isinstance(database.get("tables"), dict):
        raise RestoreError("damaged backup: the manifest names no database revision")
    try:
        ScriptDirectory.from_config(alembic_config(url)).get_revision(revision)
    except AlembicError:
        raise RestoreError(
            f"the backup's database revision {revision} is unknown to this certtoken "
            "(a newer release made it): restore with that release or a later one"
        ) from None
    return revision


def _placements(settings: Settings, staging: Path, manifest: dict[str, Any]) -> dict[Path, Path]:
    """Where each secret and CA file of the backup goes: target path to staged file."""
    members = manifest["members"]
    places: dict[Path, Path] = {}
    key_file = settings.secret_key_path
    if SECRET_KEY not in members:
        pass
    elif key_file is None:
        _same_or_refuse(settings.secret_key, staging / SECRET_KEY, "CERTTOKEN_SECRET_KEY")
    else:
        places[key_file] = staging / SECRET_KEY
    if CA_PASSPHRASE in members:
        if settings.ca_passphrase:
            _same_or_refuse(
                settings.ca_passphrase, staging / CA_PASSPHRASE, "CERTTOKEN_CA_PASSPHRASE"
            )
        else:
            target = settings.ca_passphrase_file or settings.data_dir / "ca_passphrase"
            places[target] = staging / CA_PASSPHRASE
    if SIGNING_KEY in members:
        places[key_path(settings)] = staging / SIGNING_KEY
    for name in members:
        if name.startswith(CA_PREFIX):
            places[settings.ca_dir / name.removeprefix(CA_PREFIX)] = staging / name
    return places


def _same_or_refuse(value: str, staged: Path, variable: str) -> None:
    if value.strip() != staged.read_text().strip():
        raise RestoreError(
            f"{variable} differs from the backup's; unset it (the restore writes the file) "
            "or set it to the backup's value"
        )


async def _check_empty(settings: Settings, url: str, placements: dict[Path, Path]) -> None:
    """RestoreError unless the data dir, the files to write and the database are all empty."""
    data_dir = settings.data_dir
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise RestoreError(f"{data_dir} is not empty: restore only into an empty (or new) data dir")
    for target, staged in placements.items():
        if target.exists() and target.read_bytes() != staged.read_bytes():
            raise RestoreError(f"{target} exists already: restore only into an empty place")
    if kind_of(url) == "sqlite":
        database = sqlite_path(url)
        if database is None:
            raise RestoreError("database: an in-memory SQLite database cannot be restored into")
        if database.exists() and database.stat().st_size > 0:
            raise RestoreError(f"{database} is not empty: restore only into an empty database")
    elif not await is_empty(url):
        raise RestoreError(
            "the database CERTTOKEN_DATABASE_URL names has tables: "
            "restore only into an empty database"
        )


async def _write(
    settings: Settings,
    url: str,
    staging: Path,
    manifest: dict[str, Any],
    revision: str,
    placements: dict[Path, Path],
    progress: Progress,
) -> None:
    written: list[Path] = []
    private_dir(settings.data_dir)
    try:
        await _restore_database(url, staging, manifest, revision, progress)
        for target, staged in sorted(placements.items()):
            if not target.exists():
                write_private(target, staged.read_bytes())
                written.append(target)
        progress("bringing the database to the latest revision ...")
        await upgrade(url)
    except BaseException:
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        await _undo_database(url)
        # The data dir was empty (checked): whatever it holds now, this restore wrote.
        for child in settings.data_dir.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
        raise


async def _restore_database(
    url: str, staging: Path, manifest: dict[str, Any], revision: str, progress: Progress
) -> None:
    database = manifest["database"]
    expected = {str(k): int(v) for k, v in database["tables"].items()}
    source = database.get("kind")
    if kind_of(url) == "sqlite" and source == "sqlite":
        target = sqlite_path(url)
        assert target is not None
        private_dir(target.parent)
        progress(f"writing the database to {target} ...")
        copy = staging / SQLITE_MEMBER
        if sqlite_facts(copy) != (revision, expected):
            raise RestoreError("damaged backup: the database copy differs from its manifest")
        place_sqlite(copy, target)
    else:
        progress(f"loading the {source} backup into the {kind_of(url)} database ...")
        await upgrade(url, revision)
        if source == "sqlite":
            generator = sqlite_rows(staging / SQLITE_MEMBER)
            try:
                await load_rows(url, next(generator), expected, progress)
            finally:
                generator.close()
        else:
            await load_rows(url, jsonl_rows(staging / TABLES_DIR), expected, progress)
    counts = await after_load(url)
    if counts != expected:
        wrong = sorted(n for n in set(counts) | set(expected) if counts.get(n) != expected.get(n))
        raise RestoreError(f"row counts differ from the manifest's in tables {', '.join(wrong)}")


async def _undo_database(url: str) -> None:
    if kind_of(url) == "sqlite":
        target = sqlite_path(url)
        if target is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(OSError):
                    target.with_name(target.name + suffix).unlink()
        return
    with contextlib.suppress(Exception):
        await drop_everything(url)
