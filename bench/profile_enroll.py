"""Where the services spend their CPU under enrollment load: py-spy samples of each process.

Run: ``.venv/bin/python bench/profile_enroll.py`` (needs RabbitMQ and ``py-spy``, which the
dev extra installs). Starts the three services as processes on SQLite (or ``--database
postgres``) as ``bench/enroll.py`` does, sends CSRs at ``-c`` in flight, samples each service
with py-spy (threads holding the GIL only, as ``--gil`` does) and prints, per process, the
share of samples by package group and the top functions by own and by total time.
``--out DIR`` keeps the collapsed stacks (``*.txt``, for flamegraph tools).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from enroll import system

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


def record(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Start py-spy sampling *pid* for *seconds* into *out* (collapsed stacks)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    command = [spy, "record", "--pid", str(pid), "--duration", str(int(seconds))]
    command += ["--rate", "250", "--gil", "--format", "raw", "--output", str(out), "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


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
        spies = {
            name: record(pid, args.seconds, out / f"{name}.txt")
            for name, pid in running.pids.items()
        }
        for name, spy in spies.items():
            _, err = spy.communicate()
            if spy.returncode != 0:
                print(f"py-spy on {name} failed: {err.decode()[-500:]}", file=sys.stderr)
        loader.join()
        print(
            f"load: {figures['n']:.0f} enrollments at c={args.concurrency}, "
            f"{figures['rate']:.1f}/s, p50 {figures['p50']:.1f} ms, p99 {figures['p99']:.1f} ms, "
            f"errors {figures['errors']:.0f}, duplicates {figures['duplicates']:.0f}"
        )
        for name in spies:
            print(f"\n== {name} ==")
            summarize(out / f"{name}.txt", args.top)


if __name__ == "__main__":
    main()
