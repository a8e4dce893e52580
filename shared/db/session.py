"""The database handle: engine, write and read sessions, one per request or message."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import Histogram
from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import await_only

from shared.config import Settings
from shared.db.direct import DirectConnection
from shared.db.sqlite_loop import LoopConnection, loop_creator
from shared.files import secure_sqlite

_READONLY = "certtoken_readonly"
_READ_BEGIN = "BEGIN"
_WRITE_BEGIN = "BEGIN IMMEDIATE"
_LOCK_TIMEOUT = 30.0
# sqlite3's busy timeout while a connection opens; the pragmas then set it to 0.
_CONNECT_TIMEOUT = 30.0
_FIRST_RETRY = 0.0002
_MAX_RETRY = 0.004

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
WRITE_WAIT = Histogram(
    "certtoken_db_write_wait_seconds", "Wait for this process's turn to write", buckets=_BUCKETS
)
LOCK_WAIT = Histogram(
    "certtoken_db_lock_wait_seconds",
    "Wait for SQLite's write lock (BEGIN IMMEDIATE)",
    buckets=_BUCKETS,
)
WRITE_SECONDS = Histogram(
    "certtoken_db_write_seconds",
    "This process's turn to write: SQLite's lock awaited, the transaction, the connection closed",
    buckets=_BUCKETS,
)
LOCK_HELD = Histogram(
    "certtoken_db_lock_held_seconds",
    "SQLite's write lock held: from BEGIN IMMEDIATE to the commit or rollback",
    buckets=_BUCKETS,
)
# Where a connection notes when it took SQLite's write lock.
_BEGUN = "certtoken_lock_taken"


# What the hot paths' statements run on: an ORM session, or a Core connection (no unit of
# work, identity map or ORM compile step: a write transaction 1.0 to 0.63 ms of CPU here).
Executor = AsyncSession | AsyncConnection | DirectConnection
# What write_core() and read_core() give: on a SQLite file, prebuilt statements run directly.
CoreConnection = AsyncConnection | DirectConnection
# The hot paths' statements are module constants with bound parameters: one built per call
# costs more to build and to key for SQLAlchemy's compiled cache than to run (a read
# transaction of two lookups here: 0.54 to 0.31 ms of CPU), and a constant's key is memoized.


class Database:
    """An engine with write sessions (committed on exit) and read-only sessions."""

    @classmethod
    def for_settings(cls, settings: Settings) -> Database:
        """The database the settings name, with their connection-pool bounds."""
        url = settings.resolved_database_url
        if url.startswith("sqlite"):
            return cls(url)
        return cls(url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = create_engine(url, **engine_kwargs)
        self.is_sqlite = url.startswith("sqlite")
        self._writes = async_sessionmaker(self.engine, expire_on_commit=False)
        self._read_engine = self.engine.execution_options(**{_READONLY: True})
        self._reads = async_sessionmaker(self._read_engine, expire_on_commit=False)
        # SQLite has one writer; queueing this process's writers here wakes them at once,
        # where SQLite's busy handler would make them sleep and poll.
        self._write_lock = asyncio.Lock() if self.is_sqlite else None

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction that commits on exit and rolls back on error."""
        async with self._turn(), self._writes() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reading only (on SQLite it takes no write lock)."""
        async with self._reads() as session:
            yield session

    @asynccontextmanager
    async def write_core(self) -> AsyncIterator[CoreConnection]:
        """As write(), on a Core connection: for hot paths that need no ORM objects."""
        async with self._turn(), self.engine.begin() as connection:
            yield _direct(connection)

    @asynccontextmanager
    async def read_core(self) -> AsyncIterator[CoreConnection]:
        """As read(), on a Core connection."""
        async with self._read_engine.connect() as connection:
            if self.is_sqlite:
                # Begun now: statements run directly would not begin it (one snapshot for all).
                await connection.begin()
            yield _direct(connection)

    @asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """This process's turn to write, measured: the wait for it and the time it took."""
        started = time.perf_counter()
        async with self._write_lock or contextlib.nullcontext():
            entered = time.perf_counter()
            WRITE_WAIT.observe(entered - started)
            yield
            WRITE_SECONDS.observe(time.perf_counter() - entered)

    def upsert(self, table: Any) -> Any:
        """An INSERT into *table* in this database's dialect, which has ON CONFLICT clauses."""
        # Imported on first use: the PostgreSQL dialect's package costs a process 2 MiB.
        if self.is_sqlite:
            from sqlalchemy.dialects import sqlite

            return sqlite.insert(table)
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


def _direct(connection: AsyncConnection) -> CoreConnection:
    """*connection*, or on a SQLite file its direct form (shared.db.direct)."""
    driver = connection.sync_connection.connection.driver_connection  # type: ignore[union-attr]
    if isinstance(driver, LoopConnection):
        return DirectConnection(connection, driver.sqlite)
    return connection


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """Create an async engine; SQLite gets WAL, a busy timeout and foreign keys."""
    if url.startswith("sqlite"):
        # Created owner-only before SQLite makes it 0644; its WAL and SHM files copy the mode.
        secure_sqlite(url)
        creator = loop_creator(url, _CONNECT_TIMEOUT)
        if creator is not None:
            kwargs["async_creator"] = creator  # it opens the file itself: no connect_args
        else:
            kwargs["connect_args"] = {"timeout": _CONNECT_TIMEOUT}
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        event.listen(engine.sync_engine, "commit", _sqlite_end)
        event.listen(engine.sync_engine, "rollback", _sqlite_end)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    # No ping per checkout (a round trip, a third of a short transaction's cost): a connection
    # that died with the server fails its transaction instead, which answers 503 or retries
    # the job, and SQLAlchemy then drops every pooled connection of that server.
    kwargs.setdefault("pool_pre_ping", False)
    return create_async_engine(url, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy emits BEGIN itself (below), so the driver must not.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # No busy handler: it sleeps 1, 2, 5, 10, 15 ms... between tries. Writers retry BEGIN
    # themselves with sub-millisecond async sleeps (below); WAL readers never wait for locks.
    cursor.execute("PRAGMA busy_timeout=0")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # IMMEDIATE takes the write lock up front: a deferred read-then-write transaction
    # fails with SQLITE_BUSY_SNAPSHOT under concurrent writers instead of waiting.
    readonly = conn.get_execution_options().get(_READONLY)
    statement = _READ_BEGIN if readonly else _WRITE_BEGIN
    if not _begin_on_driver(conn, statement):
        # Refused: once more through SQLAlchemy, which raises its error as for any statement.
        conn.exec_driver_sql(statement)


def _sqlite_end(conn: Any) -> None:
    # Just before the driver's COMMIT or ROLLBACK, which in WAL mode returns at once.
    taken = conn.info.pop(_BEGUN, None)
    if taken is not None:
        LOCK_HELD.observe(time.monotonic() - taken)


def _begin_on_driver(conn: Any, statement: str) -> bool:
    """Run *statement* on the driver's own cursor, retrying while locked; False if refused."""
    # SQLAlchemy's statement pipeline (events, an execution context, and an exception wrapped
    # on every locked retry) costs more than BEGIN itself.
    cursor = conn.connection.dbapi_connection.cursor()
    started = time.monotonic()
    delay, deadline = _FIRST_RETRY, started + _LOCK_TIMEOUT
    try:
        while True:
            try:
                cursor.execute(statement)
                if statement != _READ_BEGIN:
                    taken = time.monotonic()
                    LOCK_WAIT.observe(taken - started)
                    conn.info[_BEGUN] = taken
                return True
            except sqlite3.Error as exc:
                locked = isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
                if not locked or time.monotonic() > deadline:
                    return False
            # Runs inside SQLAlchemy's greenlet: this yields to the event loop while waiting.
            await_only(asyncio.sleep(delay))
            delay = min(delay * 2, _MAX_RETRY)
    finally:
        cursor.close()
