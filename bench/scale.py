"""Scale benchmark: enrollments/s and p99 on PostgreSQL with 1-2 api and 1-2 ca_worker processes.

Run: ``.venv/bin/python bench/scale.py`` (needs RabbitMQ and PostgreSQL; ``--quick`` for a
short run). Each combination of api and ca_worker processes gets a fresh PostgreSQL database
and RabbitMQ vhost, is prepared with the ``certtoken`` command (EC P-256 local CA) and runs
its services as separate processes (plus one notifier). The client sends CSRs through
``POST /token/init`` with a fixed number in flight, spread round-robin over the api
processes, and counts an enrollment when the answer says ``enrolled``. Prints, per
combination, enrollments/s, p50/p99 latency, errors, duplicate certificates and the CPU each
kind of process spent per enrollment. Progress goes to stderr. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _load import run_level
from _procstat import cpu_seconds
from _system import admin_token, postgres_database, prepare, start_api, start_service

from tests.support.amqp import vhost_url
from tests.support.pki import make_csr
from tests.support.procs import Processes, service_env

KINDS = ("api", "ca-worker", "notifier")
QUICK = {"requests": 200, "concurrency": 16, "warmup": 20}


def say(text: str) -> None:
    """Progress, on stderr so that stdout holds the figures."""
    print(text, file=sys.stderr, flush=True)


def start(procs: Processes, apis: int, workers: int) -> list[str]:
    """Start *apis* api and *workers* ca_worker processes and a notifier; return the api URLs."""
    urls = [start_api(procs, f"api-{i}") for i in range(1, apis + 1)]
    for i in range(1, workers + 1):
        start_service(procs, f"ca-worker-{i}", "ca-worker")
    start_service(procs, "notifier", "notifier")
    return urls


def cpu_by_kind(procs: Processes) -> dict[str, float]:
    """CPU seconds used so far by the processes of each kind, summed."""
    spent = dict.fromkeys(KINDS, 0.0)
    for name, proc in procs.running.items():
        kind = next(k for k in KINDS if name.startswith(k))
        spent[kind] += cpu_seconds(proc.pid)
    return spent


def run_combination(apis: int, workers: int, args: argparse.Namespace) -> dict[str, float]:
    """One measurement on a fresh database and vhost; returns its figures."""
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="certtoken-scale-")))
        amqp = stack.enter_context(vhost_url())
        database = stack.enter_context(postgres_database())
        procs = Processes(service_env(workdir / "data", amqp, database), workdir)
        stack.callback(procs.stop_all)
        say("  preparing the database (certtoken db upgrade, ca create, admin add)")
        prepare(procs)
        say(f"  starting {apis} api, {workers} ca-worker and 1 notifier processes")
        urls = start(procs, apis, workers)
        token = admin_token(urls[0])
        if args.warmup:
            say(f"  warm-up: {args.warmup} enrollments")
            warm = [make_csr(f"warm{i}") for i in range(args.warmup)]
            asyncio.run(run_level(urls, token, warm, min(args.concurrency, 8)))
        # Made before the clock starts: the client's CPU for CSRs is not what is measured.
        csrs = [make_csr(f"s{apis}{workers}-{i}") for i in range(args.requests)]
        say(f"  measuring: {args.requests} enrollments, {args.concurrency} in flight")
        before = cpu_by_kind(procs)
        figures = asyncio.run(run_level(urls, token, csrs, args.concurrency, progress=True))
        after = cpu_by_kind(procs)
        for kind in KINDS:
            figures[f"cpu {kind}"] = 1000 * (after[kind] - before[kind]) / args.requests
        return figures


def row(apis: int, workers: int, fig: dict[str, float]) -> str:
    """One line of the table."""
    cpu = " ".join(f"{fig[f'cpu {kind}']:>9.2f}" for kind in KINDS)
    return (
        f"{apis:>4} {workers:>7} {fig['rate']:>9.1f} {fig['p50']:>8.1f} {fig['p99']:>8.1f} "
        f"{fig['errors']:>6.0f} {fig['duplicates']:>5.0f}  {cpu}"
    )


def main() -> None:
    """Parse options, measure every combination, print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: bench/scale.py -n 5000 -c 64 --apis 1 2 --workers 1 2",
    )
    parser.add_argument(
        "-n",
        "--requests",
        type=int,
        default=2000,
        help="enrollments measured per combination (default 2000)",
    )
    parser.add_argument(
        "-c", "--concurrency", type=int, default=64, help="requests in flight (default 64)"
    )
    parser.add_argument(
        "--apis", type=int, nargs="+", default=[1, 2], help="api process counts (default 1 2)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1, 2],
        help="ca_worker process counts (default 1 2)",
    )
    parser.add_argument(
        "--warmup", type=int, default=100, help="enrollments before measuring (default 100)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a short run: {QUICK['requests']} enrollments, {QUICK['concurrency']} in flight, "
        f"{QUICK['warmup']} warm-up (for make bench)",
    )
    args = parser.parse_args()
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    combinations = list(itertools.product(args.apis, args.workers))
    header = (
        f"{'apis':>4} {'workers':>7} {'enroll/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} "
        f"{'dups':>5}  CPU ms per enrollment: " + " ".join(f"{k:>9}" for k in KINDS)
    )
    rows: list[str] = []
    started = time.perf_counter()
    for number, (apis, workers) in enumerate(combinations, 1):
        say(f"[{number}/{len(combinations)}] {apis} api, {workers} ca-worker")
        rows.append(row(apis, workers, run_combination(apis, workers, args)))
        say(f"  {rows[-1].strip()}")
    print(
        f"\n== PostgreSQL, RabbitMQ, EC P-256 local CA: {args.requests} enrollments per "
        f"combination, {args.concurrency} in flight, one notifier =="
    )
    print(header)
    print("\n".join(rows))
    print(f"({time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
