"""Regression tests of issue 9 (identity binding and hardening): all marked ``security``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.stack import Stack

_HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test in this folder ``security`` (``-m security`` runs just these)."""
    for item in items:
        if _HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.security)


@pytest.fixture
def stack(memory_stack: Stack) -> Stack:
    """Here, the system on SQLite and the in-process broker (memory_stack)."""
    return memory_stack
