"""Which errors are an outage of the storage (a full disk) and which are not."""

from __future__ import annotations

import errno
import sqlite3

import asyncpg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from shared.db.faults import DISK_FULL, storage_outage
from shared.messaging.base import RetryLater


def _full_database_error() -> OperationalError:
    """SQLite's own SQLITE_FULL, as SQLAlchemy raises it: a database capped at 2 pages."""
    engine = create_engine("sqlite://")
    with engine.connect() as conn:
        conn.execute(text("CREATE TABLE t (x TEXT)"))
        conn.execute(text("PRAGMA max_page_count = 2"))
        with pytest.raises(OperationalError) as caught:
            conn.execute(text("INSERT INTO t VALUES (:x)"), {"x": "x" * 20000})
    return caught.value


def test_sqlite_full_is_a_disk_full_outage_also_when_wrapped() -> None:
    error = _full_database_error()
    assert isinstance(error.orig, sqlite3.Error)
    assert storage_outage(error) == DISK_FULL
    wrapped = RetryLater("could not record")
    wrapped.__cause__ = error  # as `raise RetryLater(...) from error` chains it
    assert storage_outage(wrapped) == DISK_FULL


def test_other_disk_full_errors() -> None:
    assert storage_outage(OSError(errno.ENOSPC, "No space left on device")) == DISK_FULL
    assert storage_outage(asyncpg.exceptions.DiskFullError("could not extend file")) == DISK_FULL


def test_other_errors_are_not_outages() -> None:
    assert storage_outage(sqlite3.OperationalError("database is locked")) is None
    assert storage_outage(OSError(errno.EACCES, "Permission denied")) is None
    assert storage_outage(asyncpg.exceptions.UniqueViolationError("duplicate key")) is None
    assert storage_outage(RetryLater("the CA is busy")) is None
