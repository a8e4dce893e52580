"""Drill: PostgreSQL stopped for a few seconds mid-load, then started again."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.deployment import DRILL_MARKS, Deployment, Verdict

pytestmark = [*DRILL_MARKS, pytest.mark.machine_wide]

DOWN_SECONDS = 2


def pg_ctlcluster(action: str) -> None:
    """``pg_ctlcluster <version> main <action>`` on this machine's one cluster."""
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    done = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"pg_ctlcluster {action}: {done.stderr}"


def pg_running() -> bool:
    """Whether the cluster is up."""
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    status = subprocess.run(
        ["pg_ctlcluster", version, "main", "status"], capture_output=True, timeout=60
    )
    return status.returncode == 0


async def test_postgresql_restarted_mid_load(
    deployment: Deployment, drill_size: int, report: Callable[[Verdict], None]
) -> None:
    async def fault() -> None:
        try:
            await asyncio.to_thread(pg_ctlcluster, "stop")
            await asyncio.sleep(DOWN_SECONDS)
        finally:
            # The server is shared with every other test: it always comes back.
            if not await asyncio.to_thread(pg_running):
                await asyncio.to_thread(pg_ctlcluster, "start")

    verdict = await deployment.drill("PostgreSQL restart", drill_size, fault)
    report(verdict)
    assert verdict.ok, str(verdict)
