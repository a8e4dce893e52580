"""Where the services spend their CPU under enrollment load: py-spy samples of each process.

Run: ``.venv/bin/python bench/profile_enroll.py`` (needs RabbitMQ and ``py-spy``, which the
dev extra installs). Starts the three services as processes on SQLite (or ``--database
postgres``) as ``bench/enroll.py`` does, sends CSRs at ``-c`` in flight, samples each service
with py-spy (threads holding the GIL only, as ``--gil`` does) and prints, per process, the
share of samples by package group and the top functions by own and by total time.
``--out DIR`` keeps the collapsed stacks (``*.txt``, for flamegraph tools).

``--native`` samples the whole machine with ``perf record -a`` instead (Debian's
``linux-perf``; root or ``perf_event_paranoid`` <= 0): each process's share of the machine
(the services, RabbitMQ, PostgreSQL, this client, idle) and, per service, its share by native
library (the Python interpreter, cryptography's Rust and OpenSSL, the kernel, SQLite, libc,
uvloop). That counts what py-spy cannot: C code run without the GIL, and system time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from enroll import SERVERS, system

from tests.support.pki import make_csr

# First match wins: a frame's file path to the group its time is counted under.
GROUPS = (
    ("sqlalchemy", "SQLAlchemy"),
    ("aiosqlite", "aiosqlite/sqlite3"),
    ("sqlite3", "aiosqlite/sqlite3"),
    ("asyncpg", "asyncpg"),
    ("aio_pika", "AMQP (aio-pika, aiormq, pamqp)"),
    ("aiormq", "AMQP (aio-pika, aiormq, pamqp)"),
    ("pamqp", "AMQP (aio-pika, aiormq, pamqp)"),
    ("fastapi", "FastAPI/Starlette/pydantic"),
    ("starlette", "FastAPI/Starlette/pydantic"),
    ("pydantic", "FastAPI/Starlette/pydantic"),
    ("uvicorn", "uvicorn/httptools"),
    ("httptools", "uvicorn/httptools"),
    ("cryptography", "cryptography"),
    ("logging", "logging"),
    ("json", "json"),
    ("asyncio", "asyncio"),
    ("uvloop", "asyncio"),
    ("services/", "certtoken"),
    ("shared/", "certtoken"),
)


def group_of(frame: str) -> str:
    """The group of a py-spy frame ``function (path:line)``."""
    for needle, group in GROUPS:
        if needle in frame:
            return group
    return "other"


def summarize(path: Path, top: int) -> None:
    """Print the groups by own time, then the top functions by own and by total time."""
    own: collections.Counter[str] = collections.Counter()
    groups: collections.Counter[str] = collections.Counter()
    total_in: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        leaf = frames[-1]
        own[leaf] += count
        groups[group_of(leaf)] += count
        for frame in set(frames):
            total_in[frame] += count
    if not samples:
        print("  no samples (was the process idle?)")
        return
    print(f"  {samples} samples; own time by group:")
    for name, count in groups.most_common():
        print(f"    {100 * count / samples:5.1f} %  {name}")
    print(f"  top {top} functions by own time:")
    for frame, count in own.most_common(top):
        print(f"    {100 * count / samples:5.1f} %  {frame[:110]}")
    print(f"  top {top} certtoken functions by total time:")
    ours = [(f, c) for f, c in total_in.items() if group_of(f) == "certtoken"]
    for frame, count in sorted(ours, key=lambda fc: -fc[1])[:top]:
        print(f"    {100 * count / samples:5.1f} %  {frame[:110]}")


# First match wins: a native library (perf's "dso") to the group its samples are counted under.
NATIVE_GROUPS = (
    ("libpython", "Python interpreter"),
    ("python3", "Python interpreter"),
    ("kernel", "kernel"),
    ("vdso", "kernel"),
    ("_rust.abi3", "cryptography (Rust, OpenSSL)"),
    ("libcrypto", "cryptography (Rust, OpenSSL)"),
    ("sqlite3", "SQLite"),
    ("libc.so", "libc (malloc, memcpy)"),
    ("loop.cpython", "uvloop"),
)
# A server beside the services, by its command name, to the name enroll.py shows it under.
SERVER_NAMES = {command: name for name, commands in SERVERS.items() for command in commands}


def native_group(dso: str) -> str:
    """The group of a native library as perf names it."""
    for needle, group in NATIVE_GROUPS:
        if needle in dso:
            return group
    return "other C extensions"


def process_of(tid: int, services: dict[int, str]) -> str:
    """Whose thread *tid* is: a service's, a server's, this client's, idle, or other."""
    if tid == 0:
        return "idle"
    if tid in services:  # a thread that may be gone by now (the client's)
        return services[tid]
    try:
        status = Path(f"/proc/{tid}/status").read_text()
        pid = int(status.split("Tgid:")[1].split()[0])
        command = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, IndexError, ValueError):
        return "other"
    if pid in services:
        return services[pid]
    if pid == os.getpid():
        return "client"
    return SERVER_NAMES.get(command, "other")


def native_shares(data: Path, services: dict[int, str]) -> dict[tuple[str, str], float]:
    """Per cent of the machine's samples by (process, native group), from ``perf report``."""
    command = ["perf", "report", "-i", str(data), "--stdio", "--no-children", "-g", "none"]
    report = subprocess.run(
        [*command, "--sort", "pid,dso", "--field-separator", "\t"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    shares: collections.defaultdict[tuple[str, str], float] = collections.defaultdict(float)
    owners: dict[int, str] = {}  # perf lists a thread once per library: read /proc once
    for line in report.splitlines():
        fields = [f.strip() for f in line.split("\t")]
        if line.startswith("#") or len(fields) != 3:
            continue
        share, thread, dso = fields
        tid = int(thread.split(":", 1)[0])
        if tid not in owners:
            owners[tid] = process_of(tid, services)
        shares[(owners[tid], native_group(dso))] += float(share.rstrip("%"))
    return dict(shares)


def print_native(shares: dict[tuple[str, str], float], services: list[str]) -> None:
    """The machine's samples by process, then each service's by native library."""
    by_process: collections.defaultdict[str, float] = collections.defaultdict(float)
    for (process, _), share in shares.items():
        by_process[process] += share
    ranked = sorted(((p, s) for p, s in by_process.items() if s >= 0.1), key=lambda ps: -ps[1])
    print("\n== the machine's CPU by process (perf, every core) ==")
    print("  " + "; ".join(f"{name} {share:.1f} %" for name, share in ranked))
    for service in services:
        total = by_process[service]
        if not total:
            continue
        parts = sorted(
            ((g, s) for (p, g), s in shares.items() if p == service), key=lambda gs: -gs[1]
        )
        shown = ", ".join(f"{group} {100 * share / total:.0f} %" for group, share in parts)
        print(f"  {service} by library: {shown}")


def record_native(seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Start ``perf record`` of every core for *seconds* into *out*."""
    command = ["perf", "record", "-a", "-F", "499", "-o", str(out), "--", "sleep", str(seconds)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def record(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Start py-spy sampling *pid* for *seconds* into *out* (collapsed stacks)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    command = [spy, "record", "--pid", str(pid), "--duration", str(int(seconds))]
    command += ["--rate", "250", "--gil", "--format", "raw", "--output", str(out), "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def print_load(figures: dict[str, float], concurrency: int) -> None:
    """The load's own figures, so that a profile is read against its throughput."""
    print(
        f"load: {figures['n']:.0f} enrollments at c={concurrency}, "
        f"{figures['rate']:.1f}/s, p50 {figures['p50']:.1f} ms, p99 {figures['p99']:.1f} ms, "
        f"errors {figures['errors']:.0f}, duplicates {figures['duplicates']:.0f}"
    )


def main() -> None:
    """Start the system, load it, sample it, print the summaries."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--requests", type=int, default=3000, help="CSRs sent")
    parser.add_argument("-c", "--concurrency", type=int, default=16)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--seconds", type=float, default=8.0, help="how long py-spy samples")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--out", type=Path, help="keep the collapsed stacks in this folder")
    parser.add_argument(
        "--quick", action="store_true", help="800 CSRs sampled for 3 s (for make bench)"
    )
    parser.add_argument(
        "--native",
        action="store_true",
        help="perf record of every core instead of py-spy: CPU by process and native library",
    )
    args = parser.parse_args()
    if args.quick:
        args.requests, args.seconds = 800, 3.0
    with tempfile.TemporaryDirectory() as tmp, system(args.database, Path(tmp)) as running:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        running.warm_up()
        csrs = [make_csr(f"p{i}") for i in range(args.requests)]
        figures: dict[str, float] = {}

        def load() -> None:
            figures.update(asyncio.run(running.level(csrs, args.concurrency)))

        loader = threading.Thread(target=load)
        loader.start()
        if args.native:
            perf = record_native(args.seconds, out / "perf.data")
            _, err = perf.communicate()
            loader.join()
            if perf.returncode != 0:
                sys.exit(f"perf record failed: {err.decode()[-500:]}")
            print_load(figures, args.concurrency)
            services = {pid: name for name, pid in running.pids.items()}
            if loader.native_id is not None:  # the client's thread, gone by now
                services[loader.native_id] = "client"
            print_native(native_shares(out / "perf.data", services), list(running.pids))
            return
        spies = {
            name: record(pid, args.seconds, out / f"{name}.txt")
            for name, pid in running.pids.items()
        }
        for name, spy in spies.items():
            _, err = spy.communicate()
            if spy.returncode != 0:
                print(f"py-spy on {name} failed: {err.decode()[-500:]}", file=sys.stderr)
        loader.join()
        print_load(figures, args.concurrency)
        for name in spies:
            print(f"\n== {name} ==")
            summarize(out / f"{name}.txt", args.top)


if __name__ == "__main__":
    main()
