"""Group commit: what callers submit while one batch is being handled forms the next."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741
R = TypeVar("R")

Flush = Callable[[list[I]], Awaitable[Sequence[R | Exception]]]


class Batcher(Generic[I, R]):
    """Runs *flush* on batches of submitted items; at low load a batch is one item.

    With *linger*, each batch first waits that long for company (until ``hurry``): for work
    that no caller waits on closely, where fewer flushes matter more than promptness.
    """

    def __init__(self, flush: Flush[I, R], max_batch: int = 256, linger: float = 0.0) -> None:
        self._flush = flush
        self._max = max_batch
        self._linger = linger
        self._hurried = asyncio.Event()
        self._pending: list[tuple[I, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0

    async def submit(self, item: I) -> R:
        """Queue *item*; return its result, or raise the exception flush gave for it."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await future

    def hurry(self) -> None:
        """Stop lingering, now and from now on (nothing more is coming: a shutdown)."""
        self._hurried.set()

    async def _drain(self) -> None:
        while self._pending:
            if self._linger and not self._hurried.is_set():
                # asyncio.timeout, not wait_for: no task made per lingering batch.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._linger):
                        await self._hurried.wait()
            batch = self._pending[: self._max]
            del self._pending[: self._max]
            results: Sequence[R | Exception]
            try:
                results = await self._flush([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError("flush returned the wrong number of results")
            except Exception as exc:
                results = [exc] * len(batch)
            except BaseException:
                for _, future in batch + self._pending:
                    future.cancel()
                self._pending.clear()
                raise
            self.batches += 1
            self.items += len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
