"""Fixtures: the three services as separate processes on real RabbitMQ."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.amqp import vhost_url
from tests.support.procs import Processes, service_env


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An SQLite file or a fresh PostgreSQL database."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite+aiosqlite:///{tmp_path / 'certtoken.db'}"


@pytest.fixture
def processes(tmp_path: Path, database_url: str) -> Iterator[Processes]:
    """A prepared system (migrated, a local CA, an admin); services not yet started."""
    with vhost_url() as amqp:
        procs = Processes(service_env(tmp_path / "data", amqp, database_url), tmp_path)
        for args in (
            ("db", "upgrade"),
            ("ca", "create", "localca"),
            ("admin", "add", "admin", "-p", "admin-password-1"),
        ):
            done = procs.cli(*args)
            assert done.returncode == 0, done.stderr
        try:
            yield procs
        finally:
            procs.stop_all()
