"""genkey load against CSR latency: do server-side RSA keys slow everyone else's enrollments?

Run: ``.venv/bin/python bench/bench_genkey.py`` (needs RabbitMQ). Starts the three services as
processes on SQLite (as bench/enroll.py does), then measures CSR enrollments through
``POST /token/init`` with 16 concurrent clients for a while, first alone, then while 20
concurrent ``genkey`` RSA-3072 requests run. Prints p50/p99 of both runs and whether the CSR
p99 stayed under 250 ms. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _load import percentile
from _system import ADMIN, OWNER
from enroll import start_system

from shared.pki import KEY_TYPES
from tests.support.amqp import vhost_url
from tests.support.pki import make_csr
from tests.support.procs import Processes, service_env

P99_TARGET_MS = 250.0


class Run:
    """Latencies and failures of one kind of request."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        # Answered 200 but still ``submitted`` when the init wait ended: finished later.
        self.late: list[str] = []

    def figures(self) -> str:
        """n, p50 and p99 in ms, errors."""
        if not self.latencies:
            return f"n=0 errors={self.errors}"
        p50 = percentile(self.latencies, 50) * 1000
        p99 = percentile(self.latencies, 99) * 1000
        late = f" still-generating-at-answer={len(self.late)}" if self.late else ""
        n = len(self.latencies)
        return f"n={n} p50={p50:.1f} ms p99={p99:.1f} ms errors={self.errors}{late}"

    def p99_ms(self) -> float:
        """The 99th percentile in ms (NaN when nothing was measured)."""
        return percentile(self.latencies, 99) * 1000 if self.latencies else float("nan")


async def post_until(
    client: aiohttp.ClientSession, body: Any, want: str, done: asyncio.Event, run: Run
) -> None:
    """Post *body* (a fresh one each time when it is callable) until *done* is set."""
    while not done.is_set():
        payload = body() if callable(body) else body
        started = time.perf_counter()
        detail: dict[str, Any] = {}
        try:
            async with client.post("/token/init", json=payload) as answer:
                doc = await answer.json()
                if answer.status == 200:
                    detail = doc.get("detail", {})
        except aiohttp.ClientError:
            pass
        run.latencies.append(time.perf_counter() - started)
        if detail.get("rollout_state") == "submitted":
            run.late.append(str(detail["serial"]))
        elif detail.get("rollout_state") != want:
            run.errors += 1


async def measure(
    url: str, token: str, seconds: float, csr_clients: int, genkeys: int, keytype: str = ""
) -> Run:
    """CSR latencies over *seconds* with *csr_clients*, while *genkeys* genkey clients run."""
    # Made before the clock starts: the client's CPU is not what is measured.
    csrs = iter([make_csr(f"b{time.time_ns()}-{i}") for i in range(int(seconds * 800) + 100)])

    def csr_body() -> dict[str, Any]:
        return {"type": "certificate", "request": next(csrs), "ca": "benchca", **OWNER}

    genkey_body = {"type": "certificate", "genkey": "1", "keytype": keytype, "ca": "benchca"}
    csr_run, genkey_run = Run(), Run()
    limit = aiohttp.TCPConnector(limit=csr_clients + genkeys)
    async with aiohttp.ClientSession(
        url, headers={"Authorization": token}, connector=limit
    ) as client:
        genkey_done, csr_done = asyncio.Event(), asyncio.Event()
        background = [
            asyncio.create_task(
                post_until(client, {**genkey_body, **OWNER}, "enrolled", genkey_done, genkey_run)
            )
            for _ in range(genkeys)
        ]
        if genkeys:
            await asyncio.sleep(1.0)  # the key pool is busy before the CSR clients start
        asyncio.get_running_loop().call_later(seconds, csr_done.set)
        await asyncio.gather(
            *(
                post_until(client, csr_body, "enrolled", csr_done, csr_run)
                for _ in range(csr_clients)
            )
        )
        # Let the genkey requests in flight finish: the services stop with nothing in hand.
        genkey_done.set()
        await asyncio.gather(*background)
        if genkeys:
            print(f"  genkey {keytype} ({genkeys} concurrent): {genkey_run.figures()}", flush=True)
            await drained(client, genkey_run.late)
    return csr_run


async def drained(client: aiohttp.ClientSession, serials: list[str]) -> None:
    """Wait for the genkey tokens answered ``submitted`` to be enrolled, and say how long."""
    started = time.perf_counter()
    pending = set(serials)
    while pending and time.perf_counter() - started < 300:
        for serial in list(pending):
            async with client.get("/token/", params={"serial": serial}) as answer:
                tokens = (await answer.json())["result"]["value"]["tokens"]
            if tokens and tokens[0]["rollout_state"] != "submitted":
                pending.discard(serial)
        if pending:
            await asyncio.sleep(0.5)
    print(
        f"  genkey answered while still generating: {len(serials)}; enrolled afterwards: "
        f"{len(serials) - len(pending)} within {time.perf_counter() - started:.1f} s",
        flush=True,
    )


def main() -> None:
    """Start the system, run both measurements, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-s", "--seconds", type=float, default=10.0, help="length of each run")
    parser.add_argument("-c", "--clients", type=int, default=16, help="concurrent CSR clients")
    parser.add_argument("-g", "--genkeys", type=int, default=20, help="concurrent genkey clients")
    parser.add_argument(
        "-w", "--keygen-workers", type=int, default=0, help="key processes (0: one per core)"
    )
    parser.add_argument(
        "-k", "--keytype", default="rsa-3072", choices=KEY_TYPES, help="of the generated keys"
    )
    parser.add_argument("--quick", action="store_true", help="3 s runs (for make bench)")
    args = parser.parse_args()
    seconds = 3.0 if args.quick else args.seconds
    with tempfile.TemporaryDirectory() as tmp, vhost_url() as amqp:
        workdir = Path(tmp)
        db_url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        env = service_env(workdir / "data", amqp, db_url)
        env["CERTTOKEN_KEYGEN_WORKERS"] = str(args.keygen_workers)
        procs = Processes(env, workdir)
        try:
            url, _ = start_system(procs)
            token = httpx.post(f"{url}/auth", json=ADMIN).json()["result"]["value"]["token"]
            httpx.post(
                f"{url}/user/", json=OWNER, headers={"Authorization": token}
            ).raise_for_status()
            print(
                f"== CSR enrollments, {args.clients} clients, {seconds:.0f} s per run; "
                f"{args.keygen_workers or 'one per core'} key processes; "
                "SQLite, RabbitMQ, EC P-256 CA ==",
                flush=True,
            )
            asyncio.run(measure(url, token, 1.0, 4, 0))  # warm-up
            alone = asyncio.run(measure(url, token, seconds, args.clients, 0))
            print(f"  CSR alone: {alone.figures()}", flush=True)
            loaded = asyncio.run(
                measure(url, token, seconds, args.clients, args.genkeys, args.keytype)
            )
            print(f"  CSR with genkey load: {loaded.figures()}", flush=True)
            verdict = "yes" if loaded.p99_ms() < P99_TARGET_MS else "no"
            print(
                f"p99 alone {alone.p99_ms():.1f} ms, under genkey load {loaded.p99_ms():.1f} ms; "
                f"stayed under {P99_TARGET_MS:.0f} ms: {verdict}",
                flush=True,
            )
        finally:
            procs.stop_all()


if __name__ == "__main__":
    main()
