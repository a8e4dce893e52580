"""Fault drills: their size, the deployment they run on, and their summary lines at the end."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import drill_report
from tests.support.deployment import Deployment, Verdict, deployed

# Enrollments in flight per drill; `make chaos` runs longer variants.
SIZE_ENV = "CERTTOKEN_CHAOS_ENROLLMENTS"
DEFAULT_SIZE = 1000


@pytest.fixture
def drill_size() -> int:
    """How many enrollments a drill puts in flight."""
    return int(os.environ.get(SIZE_ENV, DEFAULT_SIZE))


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Callable[[Verdict], None]:
    """Print a drill's verdict line now (past the capture) and again in the run's summary."""

    def record(verdict: Verdict) -> None:
        drill_report.record(verdict.line(), verdict.ok)
        with capsys.disabled():
            print(f"\n{verdict.line()}")

    return record


@pytest.fixture
def deployment(tmp_path: Path, postgres_url: str) -> Iterator[Deployment]:
    """2 apis, 2 ca_workers, 2 notifiers on PostgreSQL, RabbitMQ and an SMTP sink."""
    with deployed(tmp_path, postgres_url) as running:
        yield running
