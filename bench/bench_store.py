"""CPU of the api's enrollment batch alone: lookups, checks and the write, in this process.

Run: ``.venv/bin/python bench/bench_store.py`` (``--profile`` adds cProfile's top entries).
Stores CSR enrollments through ``EnrollmentStore`` on a fresh SQLite file, one batch of
``--batch`` sizes at a time, and prints the CPU per enrollment. No broker and no HTTP: the
figure moves with the code of the batch (SQLAlchemy included), far less with a busy machine
than the end-to-end benchmark's.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

import uvloop
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _system import CA, OWNER

from services.api.enrollment import EnrollIntent, EnrollmentStore
from shared.db.models import Base, CAConnector, User
from shared.db.session import Database
from shared.jobs import SignRequest
from shared.messaging.outbox import DEFAULT_LEASE
from shared.pki import parse_csr
from tests.support.pki import make_csr

DISTINCT_CSRS = 50
WARM_UP = 100


class Intents:
    """Enrollment intents with fresh serials, cycling through a few CSRs parsed once."""

    def __init__(self) -> None:
        self._csrs = [make_csr(f"bench{i}") for i in range(DISTINCT_CSRS)]
        self._parsed = [parse_csr(csr) for csr in self._csrs]
        self._made = 0

    def batch(self, size: int) -> list[EnrollIntent]:
        """*size* intents, each with a serial not used before."""
        return [self._next() for _ in range(size)]

    def _next(self) -> EnrollIntent:
        self._made += 1
        index = self._made % DISTINCT_CSRS
        request = SignRequest(
            serial=f"BENCH{self._made:08d}",
            username=OWNER["user"],
            realm=OWNER["realm"],
            ca=CA,
            template="",
            request=self._csrs[index],
            info={"enrolled_by": "admin:admin"},
        )
        return EnrollIntent(request, "bench", self._parsed[index])


async def prepared(folder: Path) -> tuple[Database, EnrollmentStore]:
    """A store on a new database holding the benchmark's CA connector and token owner."""
    db = Database(f"sqlite+aiosqlite:///{folder / 'store.db'}")
    async with db.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        await conn.execute(
            insert(User).values(
                username=OWNER["user"],
                realm=OWNER["realm"],
                email="alice@example.com",
                givenname="A",
            )
        )
        await conn.execute(insert(CAConnector).values(name=CA, type="local", options={}))
    return db, EnrollmentStore(db, DEFAULT_LEASE)


async def store_batch(store: EnrollmentStore, intents: list[EnrollIntent]) -> list[object]:
    """Submit *intents* together: the store's batcher writes them in one transaction."""
    return await asyncio.gather(*(store.store(i) for i in intents), return_exceptions=True)


async def measure(requests: int, batches: list[int], profile: bool) -> None:
    """Print the CPU per enrollment for each batch size (and a profile of the first)."""
    with tempfile.TemporaryDirectory() as tmp:
        db, store = await prepared(Path(tmp))
        try:
            await run_sizes(store, requests, batches, profile)
        finally:
            await db.dispose()  # else aiosqlite's thread keeps the process alive


async def run_sizes(
    store: EnrollmentStore, requests: int, batches: list[int], profile: bool
) -> None:
    """Measure each batch size on *store*."""
    intents = Intents()
    [first] = await store_batch(store, intents.batch(1))
    if isinstance(first, BaseException):
        raise SystemExit(f"the store refused the benchmark's request: {first}")
    for size in batches:
        for _ in range(WARM_UP // size):
            await store_batch(store, intents.batch(size))
        rounds = max(requests // size, 1)
        started = time.process_time()
        for _ in range(rounds):
            await store_batch(store, intents.batch(size))
        spent = time.process_time() - started
        print(f"batch of {size:>2}: {1000 * spent / (rounds * size):.3f} ms CPU per enrollment")
    if profile:
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        for _ in range(max(requests // batches[0], 1)):
            await store_batch(store, intents.batch(batches[0]))
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


def main() -> None:
    """Parse options and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--requests", type=int, default=2000, help="enrollments per size")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--profile", action="store_true", help="print cProfile's top entries")
    parser.add_argument("--quick", action="store_true", help="500 enrollments per size")
    args = parser.parse_args()
    if args.quick:
        args.requests = 500
    uvloop.run(measure(args.requests, args.batch, args.profile))


if __name__ == "__main__":
    main()
