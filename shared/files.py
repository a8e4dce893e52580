"""Files certtoken reads and writes: only regular files in, owner-only files and folders out.

Everything certtoken writes (database, its WAL and shared-memory files, secrets, CA keys,
the mail outbox) is mode 0600 in a folder of mode 0700, whatever the process umask: modes
are set at creation (``os.open``/``mkdir`` with the mode, then ``chmod`` against the umask)
and tightened on start for files and folders made earlier. SQLite gives its ``-wal`` and
``-shm`` files the database file's own mode, so creating that file 0600 first covers them.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import make_url

DIR_MODE = 0o700
FILE_MODE = 0o600
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_dir(path: Path) -> Path:
    """*path* as a folder only its owner may enter (created with its parents when missing)."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _tighten(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """*path* as an owner-only file: created empty when missing, else its mode tightened."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        _tighten(path, FILE_MODE)
    else:
        os.close(fd)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Replace *path* with *data* atomically, as an owner-only file in an owner-only folder."""
    _publish(path, data, os.replace)


def create_private(path: Path, data: bytes) -> bool:
    """Write *data* to *path* as :func:`write_private` does unless it exists; whether it did."""
    try:
        # link, not replace: of processes racing to create it, the first one's file stays.
        _publish(path, data, os.link)
    except FileExistsError:
        return False
    return True


def _publish(path: Path, data: bytes, put: Callable[[Path, Path], None]) -> None:
    """Write *data* to a synced owner-only temporary file beside *path*, then *put* it there."""
    private_dir(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        put(temporary, path)
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()


def sqlite_path(url: str) -> Path | None:
    """The database file of an SQLite *url*; None for other databases and in-memory ones."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def secure_sqlite(url: str) -> None:
    """Make an SQLite database's folder 0700 and its files 0600 before SQLite opens it."""
    path = sqlite_path(url)
    if path is None:
        return
    private_dir(path.parent)
    private_file(path)
    for suffix in _SQLITE_SIDE_FILES:
        side = path.with_name(path.name + suffix)
        if side.exists():
            _tighten(side, FILE_MODE)


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of *path* if it is a regular file of at most *limit* bytes; ValueError else.

    Opened without blocking and checked with ``fstat`` before reading: a FIFO or a device
    named like a PEM file is refused at once instead of blocking the reader forever.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path.name}: not a regular file")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, min(65536, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise ValueError(f"{path.name}: larger than {limit // 1024} KiB")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _tighten(path: Path, mode: int) -> None:
    """chmod *path* to *mode* when it is looser; a file someone else owns is left as it is."""
    with contextlib.suppress(PermissionError):
        if stat.S_IMODE(path.stat().st_mode) & ~mode:
            path.chmod(mode)
