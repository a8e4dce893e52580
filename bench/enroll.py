"""End-to-end enrollment benchmark: CSRs through ``POST /token/init``, services as processes.

Run: ``.venv/bin/python bench/enroll.py`` (or ``make bench``). Needs RabbitMQ (and PostgreSQL
for ``--databases postgres``). Prints enrollments/s, latency percentiles, errors, duplicate
certificate serials and each service's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _load import run_level
from _procstat import cpu_seconds, peak_rss_mib
from _system import admin_token, postgres_database, prepare, start_api, start_service

from tests.support.amqp import vhost_url
from tests.support.pki import make_csr
from tests.support.procs import Processes, service_env


def write_stats(metrics_url: str) -> tuple[float, float, float, float]:
    """Write transactions so far: count, seconds spent in them, seconds waiting for a turn."""
    values: dict[str, float] = {}
    for line in httpx.get(metrics_url).text.splitlines():
        if line.startswith("certtoken_db_"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return (
        values.get("certtoken_db_write_seconds_count", 0.0),
        values.get("certtoken_db_write_seconds_sum", 0.0),
        values.get("certtoken_db_write_wait_seconds_sum", 0.0),
        values.get("certtoken_db_lock_wait_seconds_sum", 0.0),
    )


def start_system(procs: Processes) -> tuple[str, dict[str, str]]:
    """Prepare the database and CA, start the three services; return api and metrics URLs."""
    prepare(procs)
    url = start_api(procs)
    metrics = {"api": f"{url}/metrics"}
    for name in ("ca-worker", "notifier"):
        metrics[name] = start_service(procs, name, name)
    return url, metrics


def bench_database(database: str, requests: int, levels: list[int]) -> None:
    """Run every concurrency level against one database backend and print a table."""
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        amqp = stack.enter_context(vhost_url())
        db_url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        if database == "postgres":
            db_url = stack.enter_context(postgres_database())
        procs = Processes(service_env(workdir / "data", amqp, db_url), workdir)
        try:
            url, metrics = start_system(procs)
            token = admin_token(url)
            print(f"\n== {database}: {requests} enrollments per level, EC P-256 CA ==", flush=True)
            asyncio.run(run_level([url], token, [make_csr(f"warm{i}") for i in range(50)], 8))
            names = list(procs.running)
            print(
                f"{'conc':>5} {'enroll/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
                f"{'errors':>6} {'dups':>5}   CPU ms per enrollment: {', '.join(names)}, client"
            )
            for level in levels:
                csrs = [make_csr(f"c{level}-{i}") for i in range(requests)]
                before = {n: cpu_seconds(procs.running[n].pid) for n in names}
                writes_before = {n: write_stats(metrics[n]) for n in ("api", "ca-worker")}
                client_before = time.process_time()
                fig = asyncio.run(run_level([url], token, csrs, level))
                spent = [cpu_seconds(procs.running[n].pid) - before[n] for n in names]
                spent.append(time.process_time() - client_before)
                cpu = " ".join(f"{1000 * s / requests:.2f}" for s in spent)
                print(
                    f"{level:>5} {fig['rate']:>9.1f} {fig['p50']:>8.1f} {fig['p95']:>8.1f} "
                    f"{fig['p99']:>8.1f} {fig['errors']:>6} {fig['duplicates']:>5}   {cpu}",
                    flush=True,
                )
                for name, (count0, secs0, wait0, lock0) in writes_before.items():
                    count, secs, wait, lock = write_stats(metrics[name])
                    n = max(count - count0, 1)
                    print(
                        f"        {name}: {count - count0:.0f} write transactions, "
                        f"{1000 * (secs - secs0) / n:.2f} ms each, "
                        f"{1000 * (wait - wait0) / n:.2f} ms queued for a turn, "
                        f"{1000 * (lock - lock0) / n:.2f} ms for SQLite's lock"
                    )
            rss = {name: peak_rss_mib(p.pid) for name, p in procs.running.items()}
            print("peak RSS MiB: " + ", ".join(f"{k} {v:.0f}" for k, v in rss.items()))
        finally:
            procs.stop_all()


def main() -> None:
    """Parse options and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--requests", type=int, default=1000, help="CSRs per level")
    parser.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument(
        "--databases", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"]
    )
    parser.add_argument(
        "--quick", action="store_true", help="200 CSRs at 16 in flight (for make bench)"
    )
    args = parser.parse_args()
    if args.quick:
        args.requests, args.concurrency = 200, [16]
    for database in args.databases:
        bench_database(database, args.requests, args.concurrency)


if __name__ == "__main__":
    main()
