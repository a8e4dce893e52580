"""End-to-end enrollment benchmark: CSRs through ``POST /token/init``, services as processes.

Run: ``.venv/bin/python bench/enroll.py`` (or ``make bench``). Needs RabbitMQ (and PostgreSQL
for ``--databases postgres``). Prints enrollments/s, latency percentiles, errors, duplicate
certificate serials and each service's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _procstat import cpu_seconds, peak_rss_mib

from tests.support.amqp import vhost_url
from tests.support.pki import make_csr
from tests.support.procs import Processes, free_port, service_env

ADMIN = {"username": "admin", "password": "bench-password-1"}


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


def percentile(values: list[float], pct: float) -> float:
    """The *pct* percentile of *values* (nearest rank)."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


async def run_level(url: str, token: str, csrs: list[str], concurrency: int) -> dict[str, float]:
    """Send every CSR with *concurrency* requests in flight; return the figures."""
    latencies: list[float] = []
    errors = 0
    certificates: list[str] = []
    pending = iter(csrs)
    # aiohttp: a client light enough that the services, not the client, are measured.
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        url, headers={"Authorization": token}, connector=connector
    ) as client:

        async def worker() -> None:
            nonlocal errors
            for csr in pending:
                body = {
                    "type": "certificate",
                    "request": csr,
                    "ca": "benchca",
                    "user": "alice",
                    "realm": "bench",
                }
                started = time.perf_counter()
                try:
                    async with client.post("/token/init", json=body) as answer:
                        payload = await answer.json()
                        status = answer.status
                    detail = payload.get("detail", {})
                    ok = status == 200 and detail.get("rollout_state") == "enrolled"
                except aiohttp.ClientError:
                    ok, detail = False, {}
                latencies.append(time.perf_counter() - started)
                if ok:
                    certificates.append(detail["certificate"])
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "n": len(csrs),
        "rate": len(csrs) / elapsed,
        "p50": percentile(latencies, 50) * 1000,
        "p95": percentile(latencies, 95) * 1000,
        "p99": percentile(latencies, 99) * 1000,
        "errors": errors,
        "duplicates": len(certificates) - len(set(certificates)),
    }


def start_system(procs: Processes) -> tuple[str, dict[str, str]]:
    """Prepare the database and CA, start the three services; return api and metrics URLs."""
    for args in (
        ("db", "upgrade"),
        ("ca", "create", "benchca", "--key-type", "ec-p256"),
        ("admin", "add", ADMIN["username"], "-p", ADMIN["password"]),
    ):
        done = procs.cli(*args)
        if done.returncode != 0:
            raise SystemExit(f"certtoken {' '.join(args)} failed: {done.stderr}")
    port = free_port()
    procs.start(
        "api",
        "api",
        "--port",
        str(port),
        extra_env={"CERTTOKEN_INIT_WAIT_SECONDS": "10", "CERTTOKEN_LOG_LEVEL": "WARNING"},
    )
    url = f"http://127.0.0.1:{port}"
    procs.wait_http("api", f"{url}/readyz")
    metrics = {"api": f"{url}/metrics"}
    for name in ("ca-worker", "notifier"):
        health = free_port()
        procs.start(
            name,
            name,
            extra_env={"CERTTOKEN_HEALTH_PORT": str(health), "CERTTOKEN_LOG_LEVEL": "WARNING"},
        )
        procs.wait_http(name, f"http://127.0.0.1:{health}/readyz")
        metrics[name] = f"http://127.0.0.1:{health}/metrics"
    return url, metrics


def bench_database(database: str, requests: int, levels: list[int]) -> None:
    """Run every concurrency level against one database backend and print a table."""
    with tempfile.TemporaryDirectory() as tmp, vhost_url() as amqp:
        workdir = Path(tmp)
        db_url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        dropper = None
        if database == "postgres":
            db_url, dropper = create_postgres_db()
        procs = Processes(service_env(workdir / "data", amqp, db_url), workdir)
        try:
            url, metrics = start_system(procs)
            token = httpx.post(f"{url}/auth", json=ADMIN).json()["result"]["value"]["token"]
            httpx.post(
                f"{url}/user/",
                json={"user": "alice", "realm": "bench"},
                headers={"Authorization": token},
            ).raise_for_status()
            print(f"\n== {database}: {requests} enrollments per level, EC P-256 CA ==", flush=True)
            asyncio.run(run_level(url, token, [make_csr(f"warm{i}") for i in range(50)], 8))
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
                fig = asyncio.run(run_level(url, token, csrs, level))
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
            if dropper:
                dropper()


def create_postgres_db() -> tuple[str, object]:
    """A fresh PostgreSQL database for the run, and a function that drops it."""
    import uuid

    import asyncpg

    name = f"certtoken_bench_{uuid.uuid4().hex[:8]}"
    base = os.environ.get(
        "CERTTOKEN_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
    )
    admin_dsn = base.replace("postgresql+asyncpg", "postgresql")

    async def execute(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(execute(f'CREATE DATABASE "{name}"'))
    url = base.rsplit("/", 1)[0] + f"/{name}"
    return url, lambda: asyncio.run(execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def main() -> None:
    """Parse options and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--requests", type=int, default=1000, help="CSRs per level")
    parser.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument(
        "--databases", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"]
    )
    args = parser.parse_args()
    for database in args.databases:
        bench_database(database, args.requests, args.concurrency)


if __name__ == "__main__":
    main()
