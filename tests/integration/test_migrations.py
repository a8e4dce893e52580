"""The Alembic migrations build the schema of the models, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import insert, inspect, pool, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import migrate
from shared.db.models import Admin, Base

EXPECTED_TABLES = set(Base.metadata.tables) | {"alembic_version"}


async def table_names(url: str) -> set[str]:
    """The tables present in the database at *url*."""
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


def head_revision() -> str:
    """The newest revision among the migration scripts."""
    from alembic.script import ScriptDirectory

    from shared.db.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


async def current_revision(url: str) -> str:
    """The revision stamped in alembic_version."""
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            return str(
                (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
            )
    finally:
        await engine.dispose()


async def add_admin(url: str) -> None:
    """Store one admin row, to show that a repeated upgrade keeps data."""
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(Admin).values(name="alice", password_hash="x"))
    finally:
        await engine.dispose()


async def admin_names(url: str) -> list[str]:
    """The names of all stored admins."""
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            return list((await conn.scalars(select(Admin.name))).all())
    finally:
        await engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """An SQLite file in a directory that does not exist yet."""
    return f"sqlite+aiosqlite:///{tmp_path / 'not' / 'yet' / 'certtoken.db'}"


def test_config_needs_no_ini_and_escapes_percent() -> None:
    cfg = migrate.alembic_config("postgresql+asyncpg://u:p%40ss@h/db")
    assert cfg.config_file_name is None
    assert cfg.get_main_option("sqlalchemy.url") == "postgresql+asyncpg://u:p%40ss@h/db"
    assert Path(str(cfg.get_main_option("script_location"))) == migrate.MIGRATIONS_DIR
    assert (migrate.MIGRATIONS_DIR / "env.py").is_file()


async def test_sqlite_upgrade_builds_the_models(sqlite_url: str) -> None:
    await migrate.upgrade(sqlite_url)
    assert await table_names(sqlite_url) == EXPECTED_TABLES
    assert await current_revision(sqlite_url) == head_revision()
    assert migrate.check(sqlite_url) == []


async def test_sqlite_upgrade_is_idempotent(sqlite_url: str) -> None:
    await migrate.upgrade(sqlite_url)
    await add_admin(sqlite_url)
    await migrate.upgrade(sqlite_url)
    assert await table_names(sqlite_url) == EXPECTED_TABLES
    assert await admin_names(sqlite_url) == ["alice"]
    assert migrate.check(sqlite_url) == []


async def test_sqlite_downgrade_and_upgrade_again(sqlite_url: str) -> None:
    await migrate.upgrade(sqlite_url)
    await asyncio.to_thread(command.downgrade, migrate.alembic_config(sqlite_url), "base")
    assert await table_names(sqlite_url) == {"alembic_version"}
    await migrate.upgrade(sqlite_url)
    assert migrate.check(sqlite_url) == []


async def test_check_reports_a_drifted_schema(sqlite_url: str) -> None:
    await migrate.upgrade(sqlite_url)
    engine = create_async_engine(sqlite_url, poolclass=pool.NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP INDEX ix_token_rollout_state"))
    finally:
        await engine.dispose()
    diffs = migrate.check(sqlite_url)
    assert [d[0] for d in diffs] == ["add_index"]


def test_check_works_without_an_event_loop(sqlite_url: str) -> None:
    asyncio.run(migrate.upgrade(sqlite_url))
    assert migrate.check(sqlite_url) == []


@pytest.mark.postgres
async def test_postgres_upgrade_builds_the_models(postgres_url: str) -> None:
    await migrate.upgrade(postgres_url)
    assert await table_names(postgres_url) == EXPECTED_TABLES
    assert await current_revision(postgres_url) == head_revision()
    assert migrate.check(postgres_url) == []


@pytest.mark.postgres
async def test_postgres_upgrade_is_idempotent(postgres_url: str) -> None:
    await migrate.upgrade(postgres_url)
    await add_admin(postgres_url)
    await migrate.upgrade(postgres_url)
    assert await admin_names(postgres_url) == ["alice"]
    assert await table_names(postgres_url) == EXPECTED_TABLES
    assert migrate.check(postgres_url) == []
