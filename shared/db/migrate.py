"""Apply the Alembic migrations programmatically and compare the result with the models."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db.models import Base
from shared.files import secure_sqlite

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic config for *url* that needs no alembic.ini."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["url"] = url
    return cfg


async def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at *url* to *revision*; safe to call from a running event loop."""
    secure_sqlite(url)
    # env.py runs its own event loop with asyncio.run, so it must not share this thread.
    await asyncio.to_thread(command.upgrade, alembic_config(url), revision)


def check(url: str) -> list[Any]:
    """The differences between the database at *url* and the models; empty when in step."""
    # A private thread and loop: works whether or not the caller runs an event loop.
    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(asyncio.run, _differences(url)).result()


async def _differences(url: str) -> list[Any]:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_compare)
    finally:
        await engine.dispose()


def _compare(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))
