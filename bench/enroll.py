"""End-to-end enrollment benchmark: certtoken beside a CFSSL peer, measured in one run.

Run: ``.venv/bin/python bench/enroll.py`` (or ``make bench``). Needs RabbitMQ, PostgreSQL (for
the ``postgres`` systems) and Debian's ``golang-cfssl`` (for ``cfssl``). Each system gets the
same CSRs at each concurrency, sent by the same client; the table gives enrollments/s, latency
percentiles, errors, duplicate certificates, the ratio to CFSSL at that concurrency, CPU per
enrollment of each process and peak RSS. Figures are printed, never asserted.

Systems: ``cfssl`` (``cfssl serve`` signing EC P-256 with a SQLite certificate database),
``sqlite`` and ``postgres`` (api, ca-worker and notifier as processes on RabbitMQ),
``postgres-2w`` (the same with two ca-workers) and ``embedded`` (``certtoken run``: one
process, in-process broker, SQLite).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import httpx
from pydantic import ValidationError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _load import Send, certtoken_enroll, cfssl_sign, drive
from _procstat import cpu_seconds, cpu_seconds_named, machine_cpu, peak_rss_mib
from _system import admin_token, postgres_database, prepare, start_api, start_service

from shared.config import Settings
from tests.support.amqp import vhost_url
from tests.support.cfssl import CfsslServer
from tests.support.pki import make_csr
from tests.support.procs import Processes, embedded, service_env, start_embedded

SYSTEMS = ("cfssl", "sqlite", "postgres", "postgres-2w", "embedded")
WARM_UP = 50
# The servers beside the system under test whose CPU a level also costs (by command name).
SERVERS = {"rabbitmq": ("beam.smp",), "postgres": ("postgres",)}
# Busier than this, a core (or all of them) is what stops a level from going faster.
SATURATED = 0.9
# Less than this share of a core is a server the system under test does not use.
MEANINGFUL = 0.02
# Enrollments/s by (system, concurrency), as measured so far in this run.
Rates = dict[tuple[str, int], float]
# CERTTOKEN_* variables of --setting, given to every certtoken process.
Overrides = dict[str, str]


@dataclass
class Running:
    """A system under test: how to enroll there, and the processes whose CPU counts."""

    urls: list[str]
    pids: dict[str, int]
    send: Send = certtoken_enroll
    headers: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)

    async def level(self, csrs: list[str], concurrency: int) -> dict[str, float]:
        """Enroll *csrs* at *concurrency*; the figures."""
        return await drive(self.urls, self.headers, self.send, csrs, concurrency)

    def warm_up(self) -> None:
        """Enroll a few, so that the first level does not pay for connections and caches."""
        asyncio.run(self.level([make_csr(f"warm{i}") for i in range(WARM_UP)], 8))


def certtoken_system(url: str, pids: dict[str, int], metrics: dict[str, str]) -> Running:
    """A running certtoken at *url*, logged in as the benchmark's administrator."""
    return Running([url], pids, headers={"Authorization": admin_token(url)}, metrics=metrics)


def write_stats(metrics_url: str) -> tuple[float, ...]:
    """Write turns so far: count, seconds in them, queued, awaiting SQLite's lock, holding it."""
    values: dict[str, float] = {}
    for line in httpx.get(metrics_url).text.splitlines():
        if line.startswith("certtoken_db_"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return tuple(
        values.get(f"certtoken_db_{name}_seconds_{part}", 0.0)
        for name, part in (
            ("write", "count"),
            ("write", "sum"),
            ("write_wait", "sum"),
            ("lock_wait", "sum"),
            ("lock_held", "sum"),
        )
    )


def start_system(procs: Processes, workers: int = 1) -> tuple[str, dict[str, str]]:
    """Prepare the database and CA, start the services; return the api and metrics URLs."""
    prepare(procs)
    url = start_api(procs)
    metrics = {"api": f"{url}/metrics"}
    for index in range(workers):
        name = "ca-worker" if index == 0 else f"ca-worker-{index + 1}"
        metrics[name] = start_service(procs, name, "ca-worker")
    metrics["notifier"] = start_service(procs, "notifier", "notifier")
    return url, metrics


@contextlib.contextmanager
def system(name: str, workdir: Path, overrides: Overrides | None = None) -> Iterator[Running]:
    """Start system *name* in *workdir*, with *overrides* set; yield it running; stop it."""
    with contextlib.ExitStack() as stack:
        if name == "cfssl":
            server = CfsslServer(workdir / "cfssl")
            server.start()
            stack.callback(server.stop)
            yield Running([server.url], {"cfssl": server.pid}, send=cfssl_sign)
            return
        if name == "embedded":
            procs = embedded(workdir / "data", workdir, CERTTOKEN_LOG_LEVEL="WARNING")
            procs.overrides = dict(overrides or {})
            stack.callback(procs.stop_all)
            prepare(procs)
            url = start_embedded(procs)
            procs.wait_http("run", f"{url}/readyz")
            yield certtoken_system(url, {"run": procs.running["run"].pid}, {})
            return
        amqp = stack.enter_context(vhost_url())
        db_url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        if name.startswith("postgres"):
            db_url = stack.enter_context(postgres_database())
        procs = Processes(
            service_env(workdir / "data", amqp, db_url), workdir, overrides=dict(overrides or {})
        )
        stack.callback(procs.stop_all)
        url, metrics = start_system(procs, workers=2 if name.endswith("-2w") else 1)
        yield certtoken_system(url, {n: p.pid for n, p in procs.running.items()}, metrics)


def write_lines(
    running: Running, before: dict[str, tuple[float, ...]], elapsed: float
) -> list[str]:
    """What each database writer did during a level (turns, waiting, SQLite's lock held)."""
    lines = []
    for name, was in before.items():
        count, turn, queued, awaited, held = (
            now - then for now, then in zip(write_stats(running.metrics[name]), was, strict=True)
        )
        n = max(count, 1)
        line = (
            f"      {name}: {count:.0f} write turns, {1000 * turn / n:.2f} ms each, "
            f"{1000 * queued / n:.2f} ms queued for one"
        )
        if held:  # SQLite's one write lock; PostgreSQL locks rows, and reports none
            line += (
                f", {1000 * awaited / n:.2f} ms awaiting SQLite's lock, "
                f"{1000 * held / n:.2f} ms holding it ({held / elapsed:.0%} of the level)"
            )
        lines.append(line)
    return lines


def limit_line(
    machine: float, cores: dict[str, float], servers: dict[str, float], requests: int
) -> str:
    """Where a level stops: every core busy, one process's core busy, or neither."""
    # A server's backends that exit during a level take their CPU time with them.
    used = {n: c for n, c in cores.items() if n not in servers or c >= MEANINGFUL}
    shown = ", ".join(f"{n} {c:.2f}" for n, c in used.items())
    costs = "".join(
        f"; {n} {1000 * s / requests:.2f} ms per enrollment"
        for n, s in servers.items()
        if n in used
    )
    busiest = max(used, key=lambda n: used[n])
    if machine >= SATURATED:
        limit = "the machine's CPU (every core busy)"
    elif used[busiest] >= SATURATED:
        limit = f"{busiest}'s core"
    else:
        limit = "no core full"
    return (
        f"{'':<12} machine {100 * machine:.0f}% busy; cores used: {shown}{costs}; stops at: {limit}"
    )


def peer_rate(peer: Running | None, name: str, requests: int, level: int) -> float | None:
    """CFSSL's enroll/s at *level* measured now, just before system *name*'s level."""
    if peer is None:
        return None
    csrs = [make_csr(f"peer-{name}-c{level}-{i}") for i in range(requests)]
    return asyncio.run(peer.level(csrs, level))["rate"]


def bench_system(
    name: str,
    requests: int,
    levels: list[int],
    rates: Rates,
    details: bool,
    peer: Running | None,
    overrides: Overrides,
) -> None:
    """Run every concurrency level against system *name* and print its rows.

    Each certtoken level is preceded by the same level on the running CFSSL *peer*: the
    ratio compares two measurements seconds apart, not minutes, on a machine whose speed
    drifts by a third within the hour.
    """
    with contextlib.ExitStack() as stack:
        if name == "cfssl" and peer is not None:
            running = peer
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            running = stack.enter_context(system(name, workdir, overrides))
            running.warm_up()
        for level in levels:
            beside = None if running is peer else peer_rate(peer, name, requests, level)
            csrs = [make_csr(f"{name}-c{level}-{i}") for i in range(requests)]
            before = {n: cpu_seconds(pid) for n, pid in running.pids.items()}
            writers = [n for n in running.metrics if n != "notifier"] if details else []
            writes_before = {n: write_stats(running.metrics[n]) for n in writers}
            servers_before = {n: cpu_seconds_named(c) for n, c in SERVERS.items()}
            machine_before = machine_cpu()
            client_before = time.process_time()
            started = time.perf_counter()
            fig = asyncio.run(running.level(csrs, level))
            client = time.process_time() - client_before
            elapsed = time.perf_counter() - started
            busy = [after - was for after, was in zip(machine_cpu(), machine_before, strict=True)]
            servers = {n: cpu_seconds_named(c) - servers_before[n] for n, c in SERVERS.items()}
            spent = {n: cpu_seconds(pid) - before[n] for n, pid in running.pids.items()}
            cpu = {n: 1000 * seconds / requests for n, seconds in spent.items()}
            rates[(name, level)] = fig["rate"]
            if running is peer:
                beside = fig["rate"]
            ratio = f"{fig['rate'] / beside:.2f}x" if beside else "-"
            shown = ", ".join(f"{n} {ms:.2f}" for n, ms in cpu.items())
            print(
                f"{name:<12} {level:>4} {fig['rate']:>9.1f} {fig['p50']:>7.1f} {fig['p95']:>7.1f} "
                f"{fig['p99']:>7.1f} {fig['errors']:>6.0f} {fig['duplicates']:>5.0f} {ratio:>6} "
                f"{sum(cpu.values()):>7.2f}   {shown}; client {1000 * client / requests:.2f}",
                flush=True,
            )
            if name != "cfssl":
                cores = {n: seconds / elapsed for n, seconds in (spent | servers).items()}
                print(limit_line(busy[0] / busy[1], cores, servers, requests), flush=True)
                if beside:
                    print(f"{'':<12} CFSSL just before: {beside:.1f} enroll/s", flush=True)
            one_worker = rates.get(("postgres", level))
            if name == "postgres-2w" and one_worker:
                print(f"{'':<12} 2 ca-workers: {fig['rate'] / one_worker:.2f}x the enroll/s of 1")
            for line in write_lines(running, writes_before, elapsed):
                print(line, flush=True)
        rss = {n: peak_rss_mib(pid) for n, pid in running.pids.items()}
        print(f"{'':<12} peak RSS MiB: " + ", ".join(f"{k} {v:.0f}" for k, v in rss.items()))


def setting(pair: str) -> tuple[str, str]:
    """``NAME=VALUE`` of ``--setting``: the variable of a certtoken setting and a valid value."""
    name, equals, value = pair.partition("=")
    if not equals or name not in Settings.model_fields:
        raise argparse.ArgumentTypeError(
            f"{pair!r}: expected NAME=VALUE with NAME a certtoken setting (shared.config)"
        )
    prefix = Settings.model_config["env_prefix"]
    variable = f"{prefix}{name.upper()}"
    # Validated as the processes read it: from an environment whose only certtoken variable it
    # is (service_env drops the caller's), JSON for a list.
    environment = {k: v for k, v in os.environ.items() if not k.startswith(prefix)}
    with mock.patch.dict(os.environ, {**environment, variable: value}, clear=True):
        try:
            Settings()
        except ValidationError as exc:
            raise argparse.ArgumentTypeError(f"{name}: {exc.errors()[0]['msg']}") from None
    return variable, value


def main() -> None:
    """Parse options and run the benchmark."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Example: bench/enroll.py -n 2000 -c 1 16 --systems cfssl sqlite",
    )
    parser.add_argument("-n", "--requests", type=int, default=1000, help="CSRs per level")
    parser.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument(
        "--writes", action="store_true", help="also print each writer's database transactions"
    )
    parser.add_argument(
        "--quick", action="store_true", help="200 CSRs at 16 in flight (for make bench)"
    )
    parser.add_argument(
        "--setting",
        type=setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a certtoken setting for every certtoken process (repeatable; wins over the "
        "benchmark's own), e.g. queue_type=classic",
    )
    args = parser.parse_args()
    overrides: Overrides = dict(args.setting)
    if args.quick:
        args.requests, args.concurrency = 200, [16]
    # The peer's own rows first.
    systems = sorted(args.systems, key=lambda s: s != "cfssl")
    print(
        f"{args.requests} EC P-256 enrollments per level; "
        "ratio = enroll/s over CFSSL's at the same level, measured just before"
    )
    if overrides:
        print("certtoken settings: " + ", ".join(f"{k}={v}" for k, v in overrides.items()))
    print(
        f"{'system':<12} {'conc':>4} {'enroll/s':>9} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
        f"{'errors':>6} {'dups':>5} {'ratio':>6} {'CPU ms':>7}   per process"
    )
    rates: Rates = {}
    with contextlib.ExitStack() as stack:
        peer = None
        if "cfssl" in systems:
            peer = stack.enter_context(
                system("cfssl", Path(stack.enter_context(tempfile.TemporaryDirectory())))
            )
            peer.warm_up()
        for name in systems:
            bench_system(name, args.requests, args.concurrency, rates, args.writes, peer, overrides)


if __name__ == "__main__":
    main()
