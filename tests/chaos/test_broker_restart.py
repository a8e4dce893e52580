"""Drill: RabbitMQ's application stopped for a few seconds mid-load, then started again."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable

import pytest

from tests.support.deployment import DRILL_MARKS, Deployment, Verdict

pytestmark = [*DRILL_MARKS, pytest.mark.machine_wide]

DOWN_SECONDS = 3
# RabbitMQ 3.10: right after start_app, quorum queues deleted meanwhile (other tests' vhosts)
# crash their at-least-once dead-letter workers until rabbit_fifo_dlx_sup gives up for good,
# and every later declare of such a queue fails with INTERNAL_ERROR. Put it back.
DLX_SUP_WATCH_SECONDS = 5
_RESTART_DLX_SUP = (
    "case whereis(rabbit_fifo_dlx_sup) of undefined -> "
    "supervisor:restart_child(rabbit_sup, rabbit_fifo_dlx_sup); Pid -> Pid end."
)


def rabbitmqctl(command: str) -> None:
    """Run ``rabbitmqctl <command>``; fail the drill with its output when it fails."""
    done = subprocess.run(
        ["rabbitmqctl", "-q", command], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"rabbitmqctl {command}: {done.stderr}"


background: set[asyncio.Task[None]] = set()


async def keep_dlx_supervisor(seconds: float) -> None:
    """For *seconds*, restart RabbitMQ's dead-letter supervisor whenever it is gone."""
    end = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < end:
        await asyncio.to_thread(
            subprocess.run, ["rabbitmqctl", "-q", "eval", _RESTART_DLX_SUP], capture_output=True
        )
        await asyncio.sleep(0.5)


async def test_rabbitmq_restarted_mid_load(
    deployment: Deployment, drill_size: int, report: Callable[[Verdict], None]
) -> None:
    async def fault() -> None:
        try:
            await asyncio.to_thread(rabbitmqctl, "stop_app")
            await asyncio.sleep(DOWN_SECONDS)
        finally:
            # The broker is shared with every other test: it always comes back.
            await asyncio.to_thread(rabbitmqctl, "start_app")
            watch = asyncio.create_task(keep_dlx_supervisor(DLX_SUP_WATCH_SECONDS))
            background.add(watch)

    verdict = await deployment.drill("RabbitMQ restart", drill_size, fault)
    await asyncio.gather(*background)
    report(verdict)
    assert verdict.ok, str(verdict)
