"""The fault drills' summary lines, printed at the end of the run, xdist workers' included."""

from __future__ import annotations

from typing import Any

import pytest

WORKER_KEY = "certtoken-drills"
# (line, ok) of every drill this process ran, or the controller gathered.
_LINES: list[tuple[str, bool]] = []


def record(line: str, ok: bool) -> None:
    """Keep a drill's summary line for the end of the run."""
    _LINES.append((line, ok))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """On an xdist worker: hand the lines to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[WORKER_KEY] = list(_LINES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """On the xdist controller: take in a worker's lines (none from a worker that crashed)."""
    exported = getattr(node, "workeroutput", {}).get(WORKER_KEY, [])
    _LINES.extend((str(line), bool(ok)) for line, ok in exported)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Every drill's line: accepted, lost, duplicated, time to drain."""
    if not _LINES:
        return
    terminalreporter.section("fault drills", red=any(not ok for _, ok in _LINES), bold=True)
    for line, ok in _LINES:
        terminalreporter.line(line, red=not ok)
