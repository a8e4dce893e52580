"""Group commit: concurrent submissions share a flush; errors reach only their caller."""

from __future__ import annotations

import asyncio

import pytest

from shared.batching import Batcher


async def test_concurrent_items_share_batches_and_keep_order() -> None:
    batches: list[list[int]] = []

    async def flush(items: list[int]) -> list[int | Exception]:
        batches.append(items)
        await asyncio.sleep(0.01)
        return [i * 10 for i in items]

    batcher: Batcher[int, int] = Batcher(flush)
    assert await batcher.submit(-1) == -10  # alone: a batch of one, no waiting for company
    first = asyncio.ensure_future(batcher.submit(0))
    await asyncio.sleep(0.001)  # the flush of [0] is under way; these queue behind it
    results = await asyncio.gather(first, *(batcher.submit(i) for i in range(1, 20)))
    assert results == [i * 10 for i in range(20)]
    assert batches == [[-1], [0], list(range(1, 20))]


async def test_an_item_error_reaches_only_its_caller() -> None:
    async def flush(items: list[int]) -> list[int | Exception]:
        return [ValueError(f"bad {i}") if i % 2 else i for i in items]

    batcher: Batcher[int, int] = Batcher(flush)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    assert results[0] == 0
    assert results[2] == 2
    assert isinstance(results[1], ValueError)
    assert str(results[3]) == "bad 3"


async def test_a_failing_flush_fails_its_batch_and_the_next_works() -> None:
    calls = 0

    async def flush(items: list[int]) -> list[int | Exception]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database down")
        return list(items)

    batcher: Batcher[int, int] = Batcher(flush)
    with pytest.raises(RuntimeError, match="database down"):
        await batcher.submit(1)
    assert await batcher.submit(2) == 2


async def test_max_batch_is_respected() -> None:
    sizes: list[int] = []

    async def flush(items: list[int]) -> list[int | Exception]:
        sizes.append(len(items))
        await asyncio.sleep(0)
        return list(items)

    batcher: Batcher[int, int] = Batcher(flush, max_batch=3)
    await asyncio.gather(*(batcher.submit(i) for i in range(10)))
    assert max(sizes) <= 3
    assert sum(sizes) == 10


def lingering(seconds: float) -> tuple[Batcher[int, int], list[list[int]]]:
    """A batcher that lingers *seconds* and the batches it has flushed."""
    batches: list[list[int]] = []

    async def flush(items: list[int]) -> list[int | Exception]:
        batches.append(items)
        return list(items)

    return Batcher(flush, linger=seconds), batches


async def test_each_lingering_batch_waits_for_company() -> None:
    batcher, batches = lingering(0.05)
    first = asyncio.ensure_future(batcher.submit(0))
    await asyncio.sleep(0.01)  # inside the linger: these join the first item's batch
    assert await asyncio.gather(first, batcher.submit(1), batcher.submit(2)) == [0, 1, 2]
    assert batches == [[0, 1, 2]]
    late = asyncio.ensure_future(batcher.submit(3))
    await asyncio.sleep(0.01)
    assert not late.done()  # alone, it still waits out the linger
    assert await late == 3
    assert batches == [[0, 1, 2], [3]]


async def test_hurry_ends_the_linger_at_once_and_for_good() -> None:
    batcher, flushed = lingering(30.0)
    waiting = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0.01)
    assert not waiting.done()  # lingering: 30 s would outlast this test's guard
    batcher.hurry()
    async with asyncio.timeout(1):
        assert await waiting == 1
        assert await batcher.submit(2) == 2  # no linger after a hurry
    assert flushed == [[1], [2]]
