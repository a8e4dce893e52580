"""Faults of the storage itself, not of a request or a message: pure classification, no I/O."""

from __future__ import annotations

import errno
import sqlite3

DISK_FULL = "the database's disk is full; nothing was stored, try again once space is freed"
# PostgreSQL's SQLSTATE disk_full.
_PG_DISK_FULL = "53100"


def storage_outage(error: BaseException) -> str | None:
    """Why *error* is an outage of the storage (a full disk), or None when it is not one."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _disk_full(current):
            return DISK_FULL
        # SQLAlchemy keeps the driver's exception as ``orig``; drivers chain theirs.
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return None


def _disk_full(error: BaseException) -> bool:
    if isinstance(error, sqlite3.Error):
        return getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    if isinstance(error, OSError):
        return error.errno == errno.ENOSPC
    return getattr(error, "sqlstate", None) == _PG_DISK_FULL
