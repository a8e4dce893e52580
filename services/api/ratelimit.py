"""Per-client rate limits on ``POST /auth`` and ``POST /token/init``, shared by api processes.

A request is decided at once from memory: the client's hits in the current fixed window
(``window_seconds``, numbered from the epoch) as the shared ``rate_limit`` table told them at
the last flush, plus this process's hits since. Every ``flush_seconds`` a background task adds
the new hits to the table in one upsert that returns the totals, which also brings in the
other processes' hits. So the limit holds across processes approximately: each process may
admit what it receives in one flush interval beyond it, never more than ``limit`` of its own.
Rows of past windows are deleted. A refused request is not counted.

The client is the peer address as uvicorn reports it, which takes X-Forwarded-For into
account only from ``CERTTOKEN_TRUSTED_PROXIES`` (none by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy import delete, select

from services.api.envelope import error
from services.api.errors import ApiError
from shared.db.models import RateLimit
from shared.db.session import Database

log = logging.getLogger(__name__)

_CHUNK = 500  # rows per upsert: three parameters each, well within every driver's bound
Key = tuple[str, int]


class TooManyRequests(ApiError):
    """The client used up its requests of this window."""

    status_code = 429
    code = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


async def too_many_requests(_: Request, exc: Exception) -> JSONResponse:
    """The 429 answer in privacyIDEA's envelope, with ``Retry-After``."""
    assert isinstance(exc, TooManyRequests)
    response = error(exc.status_code, exc.code, exc.message)
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


class RateLimiter:
    """Counts hits per (route, client) and fixed window; shares them through the database."""

    def __init__(
        self,
        db: Database,
        limits: dict[str, int],
        window_seconds: int,
        flush_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._limits = {route: n for route, n in limits.items() if n > 0}
        self._window = window_seconds
        self._flush_seconds = flush_seconds
        self._clock = clock
        self._pending: dict[Key, int] = {}
        self._flushing: dict[Key, int] = {}
        self._known: dict[Key, int] = {}
        self._swept = -1
        self._task: asyncio.Task[None] | None = None

    def check(self, route: str, client: str) -> None:
        """Count one request of *client* to *route*; TooManyRequests when over the limit."""
        limit = self._limits.get(route)
        if limit is None:
            return
        now = self._clock()
        window = int(now // self._window)
        key = (f"{route}:{client}"[:200], window)
        counted = self._known.get(key, 0) + self._flushing.get(key, 0)
        if counted + self._pending.get(key, 0) >= limit:
            wait = max(1, math.ceil((window + 1) * self._window - now))
            raise TooManyRequests(
                f"rate limit: more than {limit} requests from this client in "
                f"{self._window} s; retry in {wait} s",
                wait,
            )
        self._pending[key] = self._pending.get(key, 0) + 1

    def start(self) -> None:
        """Flush in the background (nothing to do while no route is limited)."""
        if self._limits and self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop flushing; the hits counted last are written still."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            try:
                await self.flush()
            except Exception:
                log.warning("the last rate-limit counts were not shared", exc_info=True)

    async def flush(self) -> None:
        """Add this process's new hits to the table and learn every process's totals."""
        window = int(self._clock() // self._window)
        self._flushing, self._pending = self._pending, {}
        self._known = {k: n for k, n in self._known.items() if k[1] >= window}
        try:
            totals = await self._write(self._flushing, window)
        except Exception:
            # Counted again with the next flush; meanwhile this process decides alone.
            for key, hits in self._flushing.items():
                self._pending[key] = self._pending.get(key, 0) + hits
            self._flushing = {}
            raise
        self._known.update({k: n for k, n in totals.items() if k[1] >= window})
        self._flushing = {}
        # Buckets this process saw but had no new hits for: the others' hits count too.
        idle = {b for b, w in self._known if w == window and (b, w) not in totals}
        self._known.update(await self._read(idle, window))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_seconds)
            try:
                await self.flush()
            except Exception:
                log.warning("rate-limit counts not shared this time", exc_info=True)

    async def _write(self, pending: dict[Key, int], window: int) -> dict[Key, int]:
        totals: dict[Key, int] = {}
        if not pending and window == self._swept:
            return totals
        async with self._db.write() as session:
            rows = [{"bucket": b, "window": w, "hits": n} for (b, w), n in pending.items()]
            for start in range(0, len(rows), _CHUNK):
                result = await session.execute(self._upsert(rows[start : start + _CHUNK]))
                totals.update({(b, w): n for b, w, n in result})
            if window != self._swept:
                await session.execute(delete(RateLimit).where(RateLimit.window < window))
        self._swept = window
        return totals

    async def _read(self, buckets: set[str], window: int) -> dict[Key, int]:
        totals: dict[Key, int] = {}
        names = sorted(buckets)
        async with self._db.read() as session:
            for start in range(0, len(names), _CHUNK):
                rows = await session.execute(
                    select(RateLimit.bucket, RateLimit.hits).where(
                        RateLimit.window == window,
                        RateLimit.bucket.in_(names[start : start + _CHUNK]),
                    )
                )
                totals.update({(b, window): n for b, n in rows})
        return totals

    def _upsert(self, rows: list[dict[str, Any]]) -> Any:
        """INSERT ... ON CONFLICT DO UPDATE hits = hits + excluded.hits, returning the totals."""
        stmt = self._db.upsert(RateLimit).values(rows)
        stmt = stmt.on_conflict_do_update(
            index_elements=[RateLimit.bucket, RateLimit.window],
            set_={"hits": RateLimit.hits + stmt.excluded.hits},
        )
        return stmt.returning(RateLimit.bucket, RateLimit.window, RateLimit.hits)


class Limited:
    """A route dependency: the calling client's request counts against the route's limit."""

    def __init__(self, route: str) -> None:
        self.route = route

    async def __call__(self, request: Request) -> None:
        """429 (TooManyRequests) when the client is over the limit."""
        limiter: RateLimiter | None = request.app.state.ctx.limiter
        if limiter is not None:
            limiter.check(self.route, request.client.host if request.client else "unknown")
