"""The PostgreSQL connection pool of a process is bounded by its settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.pool import QueuePool

from shared.config import Settings
from shared.db.session import Database


async def test_pool_bounds_come_from_the_settings(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url="postgresql+asyncpg://certtoken@127.0.0.1/certtoken",
        db_pool_size=3,
        db_max_overflow=2,
    )
    db = Database.for_settings(settings)
    try:
        pool = db.engine.pool
        assert isinstance(pool, QueuePool)
        assert (pool.size(), pool._max_overflow) == (3, 2)
    finally:
        await db.dispose()


def test_a_pool_of_no_connections_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="db_pool_size"):
        Settings(data_dir=tmp_path, db_pool_size=0)
