"""Fixtures: the three services as separate processes on real RabbitMQ."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.amqp import vhost_url
from tests.support.procs import Processes, service_env
from tests.support.stack import prepare, settings_for


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An SQLite file or a fresh PostgreSQL database."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite+aiosqlite:///{tmp_path / 'certtoken.db'}"


@pytest.fixture
def unprepared(tmp_path: Path, database_url: str) -> Iterator[Processes]:
    """A system on an empty database and a fresh vhost: nothing prepared, no service started."""
    with vhost_url() as amqp:
        procs = Processes(service_env(tmp_path / "data", amqp, database_url), tmp_path)
        try:
            yield procs
        finally:
            procs.stop_all()


@pytest.fixture
def processes(unprepared: Processes) -> Processes:
    """A prepared system (migrated, a local CA, an admin); services not yet started."""
    # In this process: three `certtoken` commands cost seconds of interpreter start-up, and
    # test_enrollment_through_three_processes runs them.
    env = unprepared.env
    settings = settings_for(
        Path(env["CERTTOKEN_DATA_DIR"]), database_url=env["CERTTOKEN_DATABASE_URL"]
    )
    asyncio.run(prepare(settings))
    return unprepared
