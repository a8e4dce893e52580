"""Fixtures of a running system (in-process broker and real RabbitMQ), for every test folder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from shared.config import Settings
from tests.support.amqp import vhost_url
from tests.support.stack import Stack, prepare, running_stack, settings_for


@pytest.fixture
def amqp_url() -> Iterator[str]:
    """A fresh RabbitMQ vhost; fails (never skips) when RabbitMQ is unreachable."""
    with vhost_url() as url:
        yield url


@pytest.fixture(params=["memory", pytest.param("amqp", marks=pytest.mark.rabbitmq)])
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    """The system with SQLite, on each broker."""
    overrides = {}
    if request.param == "amqp":
        overrides["amqp_url"] = request.getfixturevalue("amqp_url")
    settings = settings_for(tmp_path / "data", **overrides)
    await prepare(settings)
    async with running_stack(settings) as running:
        yield running


@pytest.fixture
async def memory_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """The system on the in-process broker only, for tests of what the broker plays no part in."""
    settings = settings_for(tmp_path / "data")
    await prepare(settings)
    async with running_stack(settings) as running:
        yield running


@pytest.fixture
async def idle_worker(tmp_path: Path) -> AsyncIterator[Stack]:
    """The system with a ca_worker that consumes nothing: the test hands it the jobs."""
    settings = settings_for(tmp_path / "data", init_wait_seconds=0.2)
    await prepare(settings)
    async with running_stack(settings, worker=False) as running:
        yield running


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def prepared_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """A prepared system's settings on an SQLite file, then on PostgreSQL (nothing running)."""
    overrides = {}
    if request.param == "postgres":
        overrides["database_url"] = request.getfixturevalue("postgres_url")
    settings = settings_for(tmp_path / "data", **overrides)
    await prepare(settings)
    return settings
