"""Enrollment load for benchmarks: CSRs sent one by one at a concurrency, each timed.

The same driver loads certtoken (``POST /token/init``) and the CFSSL peer
(``POST /api/v1/cfssl/sign``), so both are measured the same way in one run.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from itertools import cycle

import aiohttp
from _system import CA, OWNER

# One enrollment on a session: the certificate it gave, or None for an error.
Send = Callable[[aiohttp.ClientSession, str], Awaitable[str | None]]


def percentile(values: list[float], pct: float) -> float:
    """The *pct* percentile of *values* (nearest rank)."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


async def certtoken_enroll(client: aiohttp.ClientSession, csr: str) -> str | None:
    """``POST /token/init`` with *csr*; the certificate when it came back enrolled."""
    body = {"type": "certificate", "request": csr, "ca": CA, **OWNER}
    async with client.post("/token/init", json=body) as answer:
        payload = await answer.json()
        status = answer.status
    detail = payload.get("detail") or {}
    if status == 200 and detail.get("rollout_state") == "enrolled":
        return str(detail["certificate"])
    return None


async def cfssl_sign(client: aiohttp.ClientSession, csr: str) -> str | None:
    """CFSSL's ``POST /api/v1/cfssl/sign`` with *csr*; the certificate when it signed."""
    async with client.post("/api/v1/cfssl/sign", json={"certificate_request": csr}) as answer:
        payload = await answer.json(content_type=None)
        status = answer.status
    if status == 200 and payload.get("success"):
        return str(payload["result"]["certificate"])
    return None


async def drive(
    urls: list[str],
    headers: dict[str, str],
    send: Send,
    csrs: list[str],
    concurrency: int,
    progress: bool = False,
) -> dict[str, float]:
    """Send every CSR with *send*, *concurrency* in flight, spread over *urls*.

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
            url, headers=headers, connector=aiohttp.TCPConnector(limit=concurrency)
        )
        for url in urls
    ]
    try:

        async def worker(client: aiohttp.ClientSession) -> None:
            nonlocal errors
            for csr in pending:
                started = time.perf_counter()
                try:
                    certificate = await send(client, csr)
                except aiohttp.ClientError:
                    certificate = None
                latencies.append(time.perf_counter() - started)
                if certificate is None:
                    errors += 1
                else:
                    certificates.append(certificate)

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


async def run_level(
    urls: list[str], token: str, csrs: list[str], concurrency: int, progress: bool = False
) -> dict[str, float]:
    """Enroll every CSR through certtoken's api *urls*, *concurrency* in flight."""
    headers = {"Authorization": token}
    return await drive(urls, headers, certtoken_enroll, csrs, concurrency, progress)
