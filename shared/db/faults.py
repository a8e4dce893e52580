"""Faults of the storage itself, not of a request or a message: pure classification, no I/O."""

from __future__ import annotations

import errno
import sqlite3

DISK_FULL = "the database's disk is full; nothing was stored, try again once space is freed"
DATABASE_DOWN = "the database is unreachable; nothing was stored, try again shortly"
# PostgreSQL's SQLSTATE disk_full.
_PG_DISK_FULL = "53100"
# PostgreSQL going away or not yet back: connection exceptions (class 08), too many
# connections while everyone reconnects, admin/crash shutdown, cannot connect now (starting).
_PG_DOWN_CLASSES = ("08",)
_PG_DOWN = frozenset({"53300", "57P01", "57P02", "57P03"})
# A connection the server dropped or refused (the driver raises the socket's error as it is).
_DOWN_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ECONNRESET})


def storage_outage(error: BaseException) -> str | None:
    """Why *error* is an outage of the storage (a full disk, an unreachable database), or None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _disk_full(current):
            return DISK_FULL
        if _database_down(current):
            return DATABASE_DOWN
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


def _database_down(error: BaseException) -> bool:
    # A restart of PostgreSQL: not the message's fault, so it never uses up its attempts.
    if getattr(error, "connection_invalidated", False):
        return True
    if isinstance(error, OSError) and error.errno in _DOWN_ERRNOS:
        return True
    # A connection lost while it was being made or used (asyncpg raises a bare one during
    # its SSL negotiation with a server that is shutting down).
    if isinstance(error, ConnectionError):
        return True
    if type(error).__name__ == "ConnectionDoesNotExistError":  # asyncpg: closed mid-query
        return True
    sqlstate = getattr(error, "sqlstate", None)
    return isinstance(sqlstate, str) and (
        sqlstate in _PG_DOWN or sqlstate.startswith(_PG_DOWN_CLASSES)
    )
