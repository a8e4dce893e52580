"""Drill: a ca_worker SIGKILLed every 2 s for 10 s (and restarted) while another keeps running."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

from tests.support.deployment import CA_WORKER, DRILL_MARKS, Deployment, Verdict

pytestmark = DRILL_MARKS

PERIOD, SPAN = 2.0, 10.0


async def test_ca_worker_killed_every_two_seconds(
    deployment: Deployment, drill_size: int, report: Callable[[Verdict], None]
) -> None:
    victim = deployment.names(CA_WORKER)[0]
    kills = 0

    async def fault() -> None:
        nonlocal kills
        end = time.monotonic() + SPAN
        while time.monotonic() < end:
            await asyncio.sleep(PERIOD)
            # Not waiting for it to be ready: a kill may land while it starts, as in production.
            await asyncio.to_thread(deployment.restart, victim, signal.SIGKILL, wait=False)
            kills += 1
        await asyncio.to_thread(deployment.wait_ready, victim)

    verdict = await deployment.drill("ca_worker SIGKILL every 2s", drill_size, fault)
    report(verdict)
    assert kills >= 4
    assert verdict.accepted == drill_size, str(verdict)
    assert verdict.ok, str(verdict)
