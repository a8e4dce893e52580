"""Migration 0008: a stored SMTP ``tls`` (implicit TLS before) keeps its meaning as ``implicit_tls``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import migrate

_ROWS = [("implicit", True, False), ("starttls", False, True), ("plain", False, False)]


async def _execute(url: str, sql: str, rows: list[dict[str, object]] | None = None) -> list[tuple]:
    """Run *sql* (once per row when given) and return what it selects."""
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.begin() as conn:
            if rows is not None:
                await conn.execute(text(sql), rows)
                return []
            return [tuple(r) for r in await conn.execute(text(sql))]
    finally:
        await engine.dispose()


async def _check_upgrade(url: str) -> None:
    config = migrate.alembic_config(url)
    await asyncio.to_thread(command.upgrade, config, "0007")
    await _execute(
        url,
        "INSERT INTO smtpserver (identifier, server, port, tls, starttls, username, password,"
        " sender, timeout, description, created_at, updated_at) VALUES (:i, 'h', 25, :tls,"
        " :starttls, '', '', 'a@example.org', 10, '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        [{"i": i, "tls": tls, "starttls": starttls} for i, tls, starttls in _ROWS],
    )
    await migrate.upgrade(url)
    stored = await _execute(
        url, "SELECT identifier, implicit_tls, starttls FROM smtpserver ORDER BY identifier"
    )
    assert sorted((i, bool(a), bool(b)) for i, a, b in stored) == sorted(_ROWS)
    assert migrate.check(url) == []

    await asyncio.to_thread(command.downgrade, config, "0007")
    stored = await _execute(url, "SELECT identifier, tls, starttls FROM smtpserver")
    assert sorted((i, bool(a), bool(b)) for i, a, b in stored) == sorted(_ROWS)


async def test_sqlite_keeps_the_tls_mode_of_stored_servers(tmp_path: Path) -> None:
    await _check_upgrade(f"sqlite+aiosqlite:///{tmp_path / 'certtoken.db'}")


@pytest.mark.postgres
async def test_postgres_keeps_the_tls_mode_of_stored_servers(postgres_url: str) -> None:
    await _check_upgrade(postgres_url)
