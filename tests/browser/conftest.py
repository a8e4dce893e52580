"""Browser-test fixtures: Debian's chromium through Playwright, a running certtoken per module.

Browser tests are plain (synchronous) functions marked ``browser``; async work against the
system goes through ``ui.system.run(coro)``. Every test's pages fail it on a CSP violation, a
script error, a missing UI file or a 5xx (checked after the test).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.support.browser import CHROMIUM, RunningSystem, Ui, _current, prepare_ui_data
from tests.support.stack import Stack


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless chromium, one per test module (Playwright's loop ends with the module, before
    any asyncio test of another folder runs)."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    # Chromium's sandbox refuses to start as root (CI's containers).
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def ui_system(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[RunningSystem, Stack]]:
    """A running certtoken (in-process broker, SQLite) shared by one test module."""
    data_dir = tmp_path_factory.mktemp("ui") / "data"
    system = RunningSystem(data_dir)
    stack = system.start()
    try:
        yield system, stack
    finally:
        system.stop()
    # Lint what the module's system issued with the rest of the run's certificates.
    certlint = request.config.pluginmanager.get_plugin("certtoken-certlint")
    if certlint is not None:
        certlint._harvest_directory(data_dir, request.node.nodeid)


@pytest.fixture(scope="module")
def _ui_prepared(ui_system: tuple[RunningSystem, Stack], browser: Browser) -> bool:
    """Users alice and bob (passwords), localca's approval template: made once per module."""
    system, stack = ui_system
    prepare_ui_data(Ui(system, stack, browser, "_prepare"))
    return True


@pytest.fixture
def ui(
    ui_system: tuple[RunningSystem, Stack],
    browser: Browser,
    _ui_prepared: bool,
    request: pytest.FixtureRequest,
) -> Iterator[Ui]:
    """The UI at ``ui.url`` with alice@corp and bob@corp; fails the test on page problems."""
    system, stack = ui_system
    module = Path(str(request.node.path)).stem
    handle = Ui(system, stack, browser, f"{module}.{request.node.name}")
    _current.append(handle.shots)
    try:
        yield handle
        problems = handle.problems()
    finally:
        _current.remove(handle.shots)
        handle.close()
    assert not problems, "the pages reported problems:\n" + "\n".join(problems)
