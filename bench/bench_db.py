"""The cost of one database transaction through ``shared.db.session.Database``.

Run: ``.venv/bin/python bench/bench_db.py`` (``--postgres`` adds PostgreSQL). Prints ms per
read transaction (one SELECT of five rows) and per write transaction (an INSERT of 1 and of 16
outbox rows), SQLAlchemy and the driver included, on the event loop the services use.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import uvloop
from sqlalchemy import insert, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _system import postgres_database

from shared.db.models import Base, OutboxMessage, utcnow
from shared.db.session import Database


def rows(count: int) -> list[dict[str, Any]]:
    """*count* outbox rows to insert."""
    now = utcnow()
    return [
        {
            "message_id": uuid.uuid4().hex,
            "exchange": "bench",
            "routing_key": "bench",
            "message_type": "bench",
            "body": "{}",
            "correlation_id": "",
            "created_at": now,
            "claimed_until": now,
        }
        for _ in range(count)
    ]


async def measure(url: str, rounds: int) -> None:
    """Print the figures for the database at *url*."""
    db = Database(url)
    async with db.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    figures = []
    for count in (1, 16):
        started = time.perf_counter()
        for _ in range(rounds):
            async with db.write() as session:
                await session.execute(insert(OutboxMessage), rows(count))
        figures.append(
            f"write of {count} rows {1000 * (time.perf_counter() - started) / rounds:.3f}"
        )
    started = time.perf_counter()
    for _ in range(rounds):
        async with db.read() as session:
            (await session.execute(select(OutboxMessage).limit(5))).scalars().all()
    figures.append(f"read {1000 * (time.perf_counter() - started) / rounds:.3f}")
    print(f"{url.split(':', 1)[0]}: ms per transaction: {', '.join(figures)}", flush=True)
    await db.dispose()


def main() -> None:
    """Parse options and measure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=500, help="transactions of each kind")
    parser.add_argument("--postgres", action="store_true", help="measure PostgreSQL too")
    parser.add_argument("--quick", action="store_true", help="100 rounds (for make bench)")
    args = parser.parse_args()
    rounds = 100 if args.quick else args.rounds
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        urls = [f"sqlite+aiosqlite:///{tmp}/bench.db"]
        if args.postgres:
            urls.append(stack.enter_context(postgres_database()))
        for url in urls:
            uvloop.run(measure(url, rounds))


if __name__ == "__main__":
    main()
