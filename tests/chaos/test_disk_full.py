"""Drill: ``certtoken run`` (SQLite, in-process broker) whose disk fills mid-load, then frees.

The data directory is a small tmpfs. A third of the way into the load a ballast file takes
every byte left; the drill keeps enrolling until the full disk has refused enough requests,
then deletes the ballast. Every request the api accepted (answered with a serial) must end in
a final state, none with a second certificate; a refused one is a 503 saying the disk is
full, never a 500, a dropped connection or a hang; and the same process enrolls afterwards.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from shared.db.faults import DISK_FULL
from tests.support.deployment import ADMIN, CA, FINAL_STATES, Verdict
from tests.support.pki import make_csr
from tests.support.procs import embedded, start_embedded

pytestmark = [pytest.mark.chaos, pytest.mark.machine_wide]

NAME = "sqlite-disk-full"
# The data dir's size (room for the enrollments after the ballast is gone), and the room the
# ballast leaves: the disk fills in the first burst.
TMPFS_BASE_MB, TMPFS_MB_PER_ENROLLMENT = 32, 0.05
HEADROOM = 1 << 20
# Requests of the burst at once: enough to queue jobs faster than the ca_worker takes them.
BURST_CONCURRENCY = 256
CONCURRENCY = 32
# Few attempts, so that the disk stays full (FULL_FOR, from the moment it fills) longer than
# a job's retries last (0.2 + 0.5 s with service_env's delays): an outage must park no job.
MAX_ATTEMPTS = 3
FULL_FOR = 2.0
# A client refused with a 503 waits this long before its next request.
BACKOFF = 0.5
KEEPALIVE_SECONDS = 1.0
REQUEST_TIMEOUT = 30.0
DRAIN_WITHIN = 30.0
USER, REALM = "alice", "corp"
DATABASE = "certtoken.db"  # the embedded default's file in the data dir


@contextmanager
def tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """A tmpfs of *size* mounted on *directory*, unmounted afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
    )
    assert mounted.returncode == 0, f"the drill mounts a tmpfs (needs root): {mounted.stderr}"
    try:
        yield directory
    finally:
        subprocess.run(["umount", "--lazy", str(directory)], check=True)


def ballast(path: Path, database: Path, leave: int) -> None:
    """Write *path* until its file system has at most *leave* bytes free.

    The database's write-ahead log is checkpointed and truncated first (while the system is
    idle): its pages would otherwise take the next megabytes of writes, and the disk would
    fill only once the load is over. As ``sqlite3 certtoken.db 'PRAGMA
    wal_checkpoint(TRUNCATE)'`` would.
    """
    with sqlite3.connect(database) as db:
        busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        assert busy == 0, "the write-ahead log was busy"
    chunk = b"\0" * 4096
    with path.open("ab", buffering=0) as file:
        while True:
            stat = os.statvfs(path)
            free = stat.f_bavail * stat.f_frsize
            if free <= leave:
                return
            file.write(b"\0" * (1 << 20) if free > leave + (1 << 20) else chunk)


@dataclass
class Load:
    """What the enrollments got while the disk filled and emptied."""

    accepted: list[str] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)
    filled_at: float = 0.0
    freed_at: float = 0.0


async def enroll(client: httpx.AsyncClient, index: int, load: Load) -> bool:
    """One enrollment, its answer sorted into accepted, refused (503 disk full) or bad;
    whether it was refused."""
    body = {
        "type": "certificate",
        "request": make_csr(f"drill{index}"),
        "ca": CA,
        "user": USER,
        "realm": REALM,
    }
    try:
        answer = await client.post("/token/init", json=body)
    except httpx.HTTPError as exc:
        load.bad.append(f"{type(exc).__name__}: {exc}")
        return False
    if answer.status_code == 200:
        load.accepted.append(answer.json()["detail"]["serial"])
        return False
    message = answer.json()["result"]["error"]["message"] if answer.content else ""
    if answer.status_code == 503 and message == DISK_FULL:
        load.refused[message] += 1
        return True
    load.bad.append(f"{answer.status_code}: {answer.text[:300]}")
    return False


async def run_load(client: httpx.AsyncClient, size: int, space: Path) -> Load:
    """A burst of a third of *size* enrollments at once, in which the disk fills (under the
    jobs the burst queued); then the rest CONCURRENCY at a time, while the disk is full for
    FULL_FOR seconds from its first refusal, and after the ballast is deleted."""
    load = Load()
    refusing = asyncio.Event()

    async def one(index: int) -> None:
        if await enroll(client, index, load):
            refusing.set()
            await asyncio.sleep(BACKOFF)

    async def outage() -> None:
        await refusing.wait()
        load.filled_at = time.monotonic()
        await asyncio.sleep(FULL_FOR)
        await asyncio.to_thread(space.unlink)
        load.freed_at = time.monotonic()

    async def spread(indices: range, at_once: int) -> None:
        pending = iter(indices)

        async def worker() -> None:
            for index in pending:
                await one(index)

        await asyncio.gather(*(worker() for _ in range(at_once)))

    freeing = asyncio.create_task(outage())
    await spread(range(size // 3), BURST_CONCURRENCY)
    await spread(range(size // 3, size), CONCURRENCY)
    if refusing.is_set():
        await freeing  # the disk is freed before the drain is timed
    else:
        freeing.cancel()
        await asyncio.to_thread(space.unlink)
    return load


async def wait_until(what: str, check: Callable[[], bool], within: float) -> float:
    """Wait until *check* holds; the seconds it took. Fails naming *what* after *within*."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > within:
            raise TimeoutError(what)
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def settle(database: Path, serials: set[str], within: float) -> float:
    """Wait until every token of *serials* is final, or *within* seconds; the seconds taken."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        known = states(database)
        if all(known.get(serial) in FINAL_STATES for serial in serials):
            break
        await asyncio.sleep(0.1)
    return time.monotonic() - started


def states(database: Path) -> dict[str, str]:
    """Each token's rollout state, read from the SQLite file."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT serial, rollout_state FROM token"))


def duplicate_certificates(database: Path) -> int:
    """Certificates beyond one per token: issued twice for a token, or held by two tokens."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        twice = db.execute(
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM issued_certificate "
            "GROUP BY token_serial HAVING count(*) > 1)"
        ).fetchone()[0]
        shared = db.execute(
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM token "
            "WHERE certificate <> '' GROUP BY certificate HAVING count(*) > 1)"
        ).fetchone()[0]
        other = db.execute(
            "SELECT count(*) FROM issued_certificate i LEFT JOIN token t "
            "ON t.serial = i.token_serial WHERE t.serial IS NULL OR t.certificate <> i.certificate"
        ).fetchone()[0]
    return int(twice) + int(shared) + int(other)


def test_disk_full_then_freed(
    tmp_path: Path, drill_size: int, report: Callable[[Verdict], None]
) -> None:
    data = tmp_path / "data"
    database = data / DATABASE
    megabytes = TMPFS_BASE_MB + round(drill_size * TMPFS_MB_PER_ENROLLMENT)
    with tmpfs(data, f"{megabytes}m"):
        procs = embedded(
            data,
            tmp_path,
            CERTTOKEN_INIT_WAIT_SECONDS="0",
            CERTTOKEN_MAX_ATTEMPTS=str(MAX_ATTEMPTS),
        )
        # Before the first start, which would otherwise make an "admin" of its own.
        added = procs.cli("admin", "add", ADMIN["username"], "-p", ADMIN["password"])
        assert added.returncode == 0, added.stderr
        url = start_embedded(procs)
        try:
            procs.wait_http("run", f"{url}/readyz", timeout=60)
            load, drain, after = asyncio.run(drill(url, drill_size, data / "ballast", database))
            alive = procs.running["run"].poll() is None
        finally:
            status = procs.stop("run", signal.SIGTERM)
        tokens = states(database)
        duplicates = duplicate_certificates(database)

    lost = sum(1 for serial in load.accepted if tokens.get(serial) not in FINAL_STATES)
    verdict = Verdict(
        name=NAME,
        accepted=len(load.accepted),
        refused=sum(load.refused.values()),
        lost=lost,
        duplicate_certs=duplicates,
        duplicate_mails=0,  # `certtoken run` mails nobody: no event handler is configured
        missing_mails=0,
        window_duplicates=0,
        server_errors=sum(1 for answer in load.bad if answer.startswith("500")),
        drain_seconds=drain,
        states=dict(Counter(tokens.values())),
    )
    report(verdict)
    assert not load.bad, f"answers other than 200 or a 503 'disk full': {load.bad[:5]}"
    assert load.refused, "the full disk refused no request"
    log = (tmp_path / "run.log").read_text()
    assert "message will be retried" in log, "the workers never met the full disk"
    assert "message parked" not in log
    # A 503 answered by the app, not by the catch-all after which uvicorn drops the connection.
    assert "Exception in ASGI application" not in log
    assert verdict.ok, verdict.line()
    assert after == "enrolled", "no enrollment after space was freed"
    assert alive, procs.log("run")
    assert status == 0, procs.log("run")


async def drill(url: str, size: int, space: Path, database: Path) -> tuple[Load, float, str]:
    """Load, fill, free; then wait for the accepted to settle and enroll once more."""
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT) as anonymous:
        login = await anonymous.post("/auth", json=ADMIN)
        assert login.status_code == 200, login.text
    token = login.json()["result"]["value"]["token"]
    # Idle connections are dropped well before the server's keep-alive timeout (uvicorn: 5 s,
    # httpx's default expiry too): reusing one the server is closing at that moment is a
    # ReadError that says nothing about the disk.
    limits = httpx.Limits(
        max_connections=max(BURST_CONCURRENCY, CONCURRENCY), keepalive_expiry=KEEPALIVE_SECONDS
    )
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": token}, timeout=REQUEST_TIMEOUT, limits=limits
    ) as client:
        user = await client.post("/user/", json={"user": USER, "realm": REALM})
        assert user.status_code == 200, user.text
        await asyncio.to_thread(ballast, space, database, HEADROOM)
        load = await run_load(client, size, space)
        # The verdict counts what did not settle.
        drain = await settle(database, set(load.accepted), within=DRAIN_WITHIN)
        answer = await client.post(
            "/token/init",
            json={"type": "certificate", "request": make_csr("after"), "ca": CA, "user": USER},
        )
        assert answer.status_code == 200, answer.text
        serial = answer.json()["detail"]["serial"]
        await wait_until(
            "the enrollment after", lambda: states(database).get(serial) in FINAL_STATES, 30
        )
        after = states(database)[serial]
    return load, drain, after
