"""Enrollment load for benchmarks: CSRs through ``POST /token/init``, timed one by one."""

from __future__ import annotations

import asyncio
import sys
import time
from itertools import cycle

import aiohttp
from _system import CA, OWNER


def percentile(values: list[float], pct: float) -> float:
    """The *pct* percentile of *values* (nearest rank)."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


async def run_level(
    urls: list[str], token: str, csrs: list[str], concurrency: int, progress: bool = False
) -> dict[str, float]:
    """Send every CSR with *concurrency* requests in flight, spread over the api *urls*.

    Returns the figures: rate, latency percentiles in ms, errors, duplicate certificates.
    With *progress*, prints how many are done every two seconds (to stderr).
    """
    latencies: list[float] = []
    errors = 0
    certificates: list[str] = []
    pending = iter(csrs)
    # aiohttp: a client light enough that the services, not the client, are measured.
    sessions = [
        aiohttp.ClientSession(
            url,
            headers={"Authorization": token},
            connector=aiohttp.TCPConnector(limit=concurrency),
        )
        for url in urls
    ]
    try:

        async def worker(client: aiohttp.ClientSession) -> None:
            nonlocal errors
            for csr in pending:
                body = {"type": "certificate", "request": csr, "ca": CA, **OWNER}
                started = time.perf_counter()
                try:
                    async with client.post("/token/init", json=body) as answer:
                        payload = await answer.json()
                        status = answer.status
                    detail = payload.get("detail") or {}
                    ok = status == 200 and detail.get("rollout_state") == "enrolled"
                except aiohttp.ClientError:
                    ok, detail = False, {}
                latencies.append(time.perf_counter() - started)
                if ok:
                    certificates.append(detail["certificate"])
                else:
                    errors += 1

        async def report() -> None:
            while True:
                await asyncio.sleep(2)
                print(f"    {len(latencies)}/{len(csrs)} answered", file=sys.stderr, flush=True)

        reporter = asyncio.create_task(report()) if progress else None
        clients = cycle(sessions)
        started = time.perf_counter()
        await asyncio.gather(*(worker(next(clients)) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        if reporter is not None:
            reporter.cancel()
    finally:
        for session in sessions:
            await session.close()
    return {
        "n": len(csrs),
        "rate": len(csrs) / elapsed,
        "p50": percentile(latencies, 50) * 1000,
        "p95": percentile(latencies, 95) * 1000,
        "p99": percentile(latencies, 99) * 1000,
        "errors": errors,
        "duplicates": len(certificates) - len(set(certificates)),
    }
