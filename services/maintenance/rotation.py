"""``certtoken secrets rotate``: every sealed secret re-sealed under a new secret key.

The keyring file (shared.keyring) is the rotation's state, so an interrupted rotation resumes:

1. a keyring of one key gets a new key in front (the old one stays, still accepted); running
   services re-read the file before each use and seal with the new key from then on;
2. after a pause for seals already under way (``settle``), every sealed column is read page by
   page and each value the new key does not open is re-sealed, compare-and-set (a value
   changed meanwhile is left to the next pass), until a pass finds nothing left;
3. the keyring is written with the new key alone: the old key is no longer needed.

A keyring of several keys is a rotation under way: running the command again goes on from
step 2. Rotating again after a finished rotation makes another new key.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from shared.config import Settings
from shared.db.models import Base, CAConnector, CAGeneration, CAPublication, SmtpServer, TokenKey
from shared.db.session import Database
from shared.keyring import keys_of, ring_text
from shared.security import SecretBox

# Every column that holds SecretBox-sealed values; a new one must be added here.
SEALED: tuple[tuple[type[Base], tuple[str, ...]], ...] = (
    (TokenKey, ("private_key", "password", "pkcs12")),
    (CAConnector, ("secrets",)),
    (CAPublication, ("ocsp_key",)),
    (CAGeneration, ("ocsp_key",)),
    (SmtpServer, ("password",)),
)
_PAGE = 200

Progress = Callable[[str], None]


class RotationError(Exception):
    """The rotation cannot go on; the old key stays accepted."""


@dataclass
class Rotated:
    """What a rotation did."""

    resumed: bool
    resealed: int


async def rotate(settings: Settings, db: Database, *, settle: float, progress: Progress) -> Rotated:
    """Rotate the secret key of *settings* (or finish the rotation under way)."""
    path = settings.secret_key_path
    if path is None:
        raise RotationError(
            "CERTTOKEN_SECRET_KEY holds the key itself, which a rotation cannot rewrite: "
            "put it in a file named by CERTTOKEN_SECRET_KEY_FILE"
        )
    with _exclusive(path):
        keys = keys_of(_read(path))
        resumed = len(keys) > 1
        if resumed:
            progress(f"resuming the rotation under way ({len(keys) - 1} older key(s) accepted)")
        else:
            keys = [secrets.token_urlsafe(48), *keys]
            _replace(path, ring_text(keys))
            progress(f"{path}: new key first; the old key is still accepted")
        if settle > 0:
            progress(f"waiting {settle:g} s for seals under way in running services ...")
            await asyncio.sleep(settle)
        box = SecretBox(ring_text(keys))
        total = 0
        while True:
            count = await _reseal_pass(db, box, progress)
            total += count
            if count == 0:
                break
        _replace(path, ring_text(keys[:1]))
        progress(f"{path}: the old key is removed; {total} value(s) re-sealed")
    return Rotated(resumed, total)


async def _reseal_pass(db: Database, box: SecretBox, progress: Progress) -> int:
    """Re-seal what the current key does not open, in every sealed column; how many."""
    total, broken = 0, []
    for model, columns in SEALED:
        count, unopened = await _reseal_table(db, box, model, columns)
        if count:
            progress(f"{model.__tablename__}: {count} value(s) re-sealed")
        total += count
        broken += unopened
    if broken:
        raise RotationError(
            f"{len(broken)} sealed value(s) open with no key of the keyring "
            f"({', '.join(broken[:5])}): set them again or delete them, then run this again"
        )
    return total


async def _reseal_table(
    db: Database, box: SecretBox, model: type[Base], columns: tuple[str, ...]
) -> tuple[int, list[str]]:
    [key_column] = model.__mapper__.primary_key
    key = getattr(model, str(key_column.key))
    fields = [getattr(model, name) for name in columns]
    count, last = 0, None
    broken: list[str] = []
    while True:
        query = select(key, *fields).order_by(key).limit(_PAGE)
        if last is not None:
            query = query.where(key > last)
        async with db.read() as session:
            page = (await session.execute(query)).all()
        if not page:
            return count, broken
        for row in page:
            last = row[0]
            changes: dict[str, Any] = {}
            for name, value in zip(columns, row[1:], strict=True):
                if not value or box.is_current(value):
                    continue
                try:
                    changes[name] = box.seal(box.open(value))
                except ValueError:
                    broken.append(f"{model.__tablename__}.{name} of {row[0]!r}")
            if changes:
                unchanged = [getattr(model, n) == v for n, v in zip(columns, row[1:], strict=True)]
                async with db.write() as session:
                    result = await session.execute(
                        update(model).where(key == row[0], *unchanged).values(**changes)
                    )
                count += result.rowcount  # type: ignore[attr-defined]


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise RotationError(f"{path}: no secret key to rotate") from None


def _replace(path: Path, text: str) -> None:
    """Replace the keyring file whole (rename), keeping its mode; synced before and after."""
    mode = path.stat().st_mode & 0o777
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Only one rotation of *path* at a time."""
    lock = path.with_name(f".{path.name}.lock")
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RotationError("another rotation of this secret key is running") from None
        yield
    finally:
        os.close(fd)
