"""SQLite for the async engine with its calls made on the event loop's own thread.

aiosqlite hands every call (execute, fetch, description, commit...) to a thread of its own and
back, about 0.1 ms each here and several per statement, where the SQLite call itself on a
local file in WAL mode takes microseconds: a read transaction cost 1.7 ms through the thread
and 0.5 ms on the loop (SQLAlchemy included). Nothing here waits for a lock, as
``busy_timeout`` is 0 and writers retry ``BEGIN IMMEDIATE`` with async sleeps
(shared.db.session); what can hold the loop is a WAL checkpoint's fsync, after about every
4 MB written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import aiosqlite
from sqlalchemy.engine import make_url

# aiosqlite's default number of rows a cursor's iterator fetches at a time.
_ITER_CHUNK = 64


class LoopConnection(aiosqlite.Connection):
    """An aiosqlite connection whose calls run where they are awaited, not in its thread."""

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call *fn* now (aiosqlite queues it for its thread)."""
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    @property
    def sqlite(self) -> sqlite3.Connection:
        """The ``sqlite3`` connection itself (shared.db.direct runs statements on it)."""
        if self._conn is None:
            raise ValueError("Connection closed")
        return self._conn


def loop_creator(url: str, timeout: float) -> Callable[[], Awaitable[LoopConnection]] | None:
    """An ``async_creator`` for the SQLite file *url*; None for memory or URI databases."""
    parsed = make_url(url)
    path = parsed.database
    if not path or path == ":memory:" or parsed.query:
        return None

    def connect() -> sqlite3.Connection:
        # Opened in aiosqlite's thread, used on the loop's: never at the same time.
        return sqlite3.connect(path, timeout=timeout, check_same_thread=False)

    async def create() -> LoopConnection:
        connection = LoopConnection(connect, _ITER_CHUNK)
        await connection  # starts its thread, which opens the file
        return connection

    return create
