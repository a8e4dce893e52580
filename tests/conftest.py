"""Fixtures shared by every test; add new ones in their own section below."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

import pytest
from sqlalchemy.engine import URL, make_url

if TYPE_CHECKING:
    from pathlib import Path

    from tests.support.cfssl import CfsslServer
    from tests.support.smtp import SmtpSink

T = TypeVar("T")
pytest_plugins = ["tests.support.fixtures", "tests.support.certlint", "tests.support.drill_report"]


def run_in_fresh_loop(make_coro: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine in a private thread and event loop, whatever loop pytest runs."""

    async def main() -> T:
        return await make_coro()

    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(asyncio.run, main()).result()


# --- PostgreSQL -------------------------------------------------------------------------------

POSTGRES_URL_ENV = "CERTTOKEN_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def _asyncpg_kwargs(url: URL) -> dict[str, object]:
    """Connection arguments for asyncpg from a SQLAlchemy URL."""
    return {
        "host": url.host or "127.0.0.1",
        "port": url.port or 5432,
        "user": url.username or "postgres",
        "password": url.password,
        "database": url.database or "postgres",
        "timeout": 10,
    }


@pytest.fixture(scope="session")
def postgres_admin_url() -> URL:
    """The URL of a database that may create databases; fails (never skips) when unreachable."""
    import asyncpg

    url = make_url(os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL))

    async def probe() -> None:
        conn = await asyncpg.connect(**_asyncpg_kwargs(url))
        await conn.close()

    error: Exception | None = None
    try:
        run_in_fresh_loop(probe)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        error = exc
    if error is not None:
        pytest.fail(
            f"PostgreSQL unreachable at {url.render_as_string()} ({error!r}); "
            f"start it or set {POSTGRES_URL_ENV}",
            pytrace=False,
        )
    return url


@pytest.fixture
def postgres_url(postgres_admin_url: URL) -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database, dropped after the test."""
    import asyncpg

    name = f"certtoken_test_{uuid.uuid4().hex[:16]}"
    admin = _asyncpg_kwargs(postgres_admin_url)

    async def execute(sql: str) -> None:
        conn = await asyncpg.connect(**admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    run_in_fresh_loop(lambda: execute(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        run_in_fresh_loop(lambda: execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --- Order ------------------------------------------------------------------------------------


DRILLS_OPTION = "--drills"


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--drills``: whether the drills that change the machine (marker ``machine_wide``) run."""
    parser.addoption(
        DRILLS_OPTION,
        choices=("with", "skip", "only"),
        default="with",
        help="with: the drills that restart RabbitMQ or PostgreSQL or mount a tmpfs run last "
        "(default); skip: all but those (safe to run in parallel with -n); only: just those",
    )


def _is_drill(item: pytest.Item) -> bool:
    return item.get_closest_marker("machine_wide") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep or deselect the fault drills as ``--drills`` says; they run last."""
    choice = config.getoption(DRILLS_OPTION)
    if choice != "with":
        drills_wanted = choice == "only"
        deselected = [item for item in items if _is_drill(item) != drills_wanted]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if _is_drill(item) == drills_wanted]
    items.sort(key=_is_drill)


# --- Logging ----------------------------------------------------------------------------------


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Show extra fields (errors, serials, correlation ids) in captured logs."""
    from shared.logs import TextFormatter

    plugin = config.pluginmanager.get_plugin("logging-plugin")
    if plugin is None:
        return
    formatter = TextFormatter("%(levelname)s %(name)s: %(message)s")
    for name in ("report_handler", "caplog_handler", "log_cli_handler", "log_file_handler"):
        handler = getattr(plugin, name, None)
        if handler is not None:
            handler.setFormatter(formatter)


# --- SMTP -------------------------------------------------------------------------------------


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 and a free port, collecting mail."""
    from tests.support.smtp import running_sink

    with running_sink() as sink:
        yield sink


# --- cfssl ------------------------------------------------------------------------------------


@pytest.fixture
def cfssl(tmp_path: Path) -> Iterator[CfsslServer]:
    """A real ``cfssl serve`` on 127.0.0.1 with its own CA."""
    from tests.support.cfssl import CfsslServer

    server = CfsslServer(tmp_path / "cfssl")
    server.start()
    try:
        yield server
    finally:
        server.stop()
