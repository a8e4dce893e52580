"""Prebuilt statements run on sqlite3 directly give what SQLAlchemy gives, in its transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from shared.db.direct import DirectConnection, prebuilt
from shared.db.models import UTCDateTime
from shared.db.session import Database

META = MetaData()
ITEMS = Table(
    "direct_item",
    META,
    Column("id", Integer, primary_key=True),
    Column("name", String(40), nullable=False, unique=True),
    Column("options", JSON, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("seen_at", UTCDateTime, nullable=True),
)
WITH_DEFAULT = Table(
    "direct_defaulted",
    META,
    Column("id", Integer, primary_key=True),
    Column("made", String(10), default=lambda: "python"),
)
BY_NAMES = ITEMS.c.name.in_(bindparam("names", expanding=True))
# As the hot paths write them: module constants, marked prebuilt.
INSERT = prebuilt(insert(ITEMS))
SELECT = prebuilt(select(ITEMS.c.name, ITEMS.c.options, ITEMS.c.active, ITEMS.c.seen_at))
BY_NAME = prebuilt(
    select(ITEMS.c.name, ITEMS.c.options, ITEMS.c.active, ITEMS.c.seen_at)
    .where(BY_NAMES)
    .order_by(ITEMS.c.name)
)
NAMES_ACTIVE = prebuilt(select(ITEMS.c.name).where(BY_NAMES, ITEMS.c.active == bindparam("active")))
UPDATE = prebuilt(
    update(ITEMS)
    .where(ITEMS.c.name == bindparam("b_name"))
    .values(seen_at=bindparam("seen_at"), options=bindparam("options"))
)
FORGET = prebuilt(update(ITEMS).where(BY_NAMES).values(seen_at=None))
DELETE = prebuilt(delete(ITEMS).where(BY_NAMES))
LATEST = prebuilt(
    select(select(func.count(ITEMS.c.id)).scalar_subquery(), func.max(ITEMS.c.seen_at))
)
INSERT_DEFAULTED = prebuilt(insert(WITH_DEFAULT))

WHEN = datetime(2026, 12, 2, 9, 30, 15, 123456, tzinfo=UTC)
ROWS: list[dict[str, Any]] = [
    {"name": "a", "options": {"k": [1, 2]}, "active": True, "seen_at": WHEN},
    {"name": "b", "options": {}, "active": False, "seen_at": None},
    {"name": "c", "options": {"x": "é"}, "active": True, "seen_at": WHEN + timedelta(days=1)},
]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'direct.db'}")
    async with database.engine.begin() as connection:
        await connection.run_sync(META.create_all)
    yield database
    await database.dispose()


async def both(db: Database, statement: Any, params: Any = None) -> tuple[list[Any], list[Any]]:
    """The rows *statement* gives run directly, and through SQLAlchemy, in one snapshot."""
    async with db.read_core() as connection:
        assert isinstance(connection, DirectConnection)
        direct = (await connection.execute(statement, params)).all()
        through = (await connection.connection.execute(statement, params)).all()
    return [tuple(r) for r in direct], [tuple(r) for r in through]


async def test_core_connections_on_a_sqlite_file_run_prebuilt_statements_directly(
    db: Database,
) -> None:
    async with db.write_core() as connection:
        assert isinstance(connection, DirectConnection)
        await connection.execute(INSERT, ROWS)
    direct, through = await both(db, SELECT)
    assert direct == through
    assert direct[0] == ("a", {"k": [1, 2]}, True, WHEN)  # JSON, bool, aware datetime back
    assert direct[1] == ("b", {}, False, None)
    assert direct[2][1] == {"x": "é"}


async def test_in_lists_of_every_length_and_fixed_values(db: Database) -> None:
    async with db.write_core() as connection:
        await connection.execute(INSERT, ROWS)
    for names in ([], ["b"], ["c", "a", "zz"], ["a", "b", "c"]):
        direct, through = await both(db, BY_NAME, {"names": names})
        assert direct == through
        assert [row[0] for row in direct] == sorted(set(names) & {"a", "b", "c"})
    async with db.read_core() as connection:
        got = await connection.scalars(NAMES_ACTIVE, {"names": ["a", "b", "c"], "active": True})
        assert list(got) == ["a", "c"]
        assert await connection.scalar(BY_NAME, {"names": ["b"]}) == "b"


async def test_updates_deletes_and_aggregates_match_sqlalchemy(db: Database) -> None:
    later = WHEN + timedelta(hours=3)
    async with db.write_core() as connection:
        await connection.execute(INSERT, ROWS)
        await connection.execute(
            UPDATE,
            [
                {"b_name": "a", "seen_at": later, "options": {"n": 1}},
                {"b_name": "b", "seen_at": later, "options": {"n": 2}},
            ],
        )
        await connection.execute(FORGET, {"names": ["c"]})
        await connection.execute(DELETE, {"names": ["zz"]})
    direct, through = await both(db, SELECT)
    assert direct == through
    assert [(r[0], r[1], r[3]) for r in direct] == [
        ("a", {"n": 1}, later),
        ("b", {"n": 2}, later),
        ("c", {"x": "é"}, None),
    ]
    direct, through = await both(db, LATEST)
    assert direct == through == [(3, later)]
    async with db.write_core() as connection:
        await connection.execute(DELETE, {"names": ["a", "c"]})
    direct, _ = await both(db, SELECT)
    assert [row[0] for row in direct] == ["b"]


async def test_other_statements_run_through_sqlalchemy_in_the_same_transaction(
    db: Database,
) -> None:
    async def mixed_then_fail() -> None:
        async with db.write_core() as connection:
            await connection.execute(INSERT, ROWS[:1])
            # Built per call, so not prebuilt: SQLAlchemy runs it, on the same connection.
            await connection.execute(insert(ITEMS).values(name="d", options={}, active=True))
            assert await connection.scalar(select(func.count()).select_from(ITEMS)) == 2
            assert [r[0] for r in (await connection.execute(SELECT)).all()] == ["a", "d"]
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError, match="roll back"):
        await mixed_then_fail()
    direct, _ = await both(db, SELECT)
    assert direct == []  # both statements' rows went with the rollback


async def test_a_read_sees_one_snapshot(db: Database) -> None:
    async with db.write_core() as connection:
        await connection.execute(INSERT, ROWS[:1])
    async with db.read_core() as reader:
        assert len((await reader.execute(SELECT)).all()) == 1
        async with db.write_core() as writer:
            await writer.execute(INSERT, ROWS[1:])
        # Committed meanwhile, yet not seen: the read began a transaction before its first row.
        assert len((await reader.execute(SELECT)).all()) == 1
    async with db.read_core() as reader:
        assert len((await reader.execute(SELECT)).all()) == 3


async def test_a_python_side_default_is_refused_not_left_out(db: Database) -> None:
    async with db.write_core() as connection:
        with pytest.raises(ValueError, match="every value given"):
            await connection.execute(INSERT_DEFAULTED, [{"id": 1}])
        await connection.execute(INSERT_DEFAULTED, [{"id": 2, "made": "given"}])
        made = (await connection.execute(text("SELECT made FROM direct_defaulted"))).scalar()
    assert made == "given"


def test_only_core_statements_can_be_prebuilt() -> None:
    with pytest.raises(TypeError, match="not a Core statement"):
        prebuilt("SELECT 1")  # type: ignore[type-var]


async def test_memory_databases_keep_sqlalchemy(tmp_path: Path) -> None:
    database = Database("sqlite+aiosqlite:///:memory:")
    try:
        async with database.read_core() as connection:
            assert not isinstance(connection, DirectConnection)
            assert (await connection.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await database.dispose()


async def test_driver_errors_arrive_as_sqlalchemy_raises_them(db: Database) -> None:
    async def insert_twice() -> None:
        async with db.write_core() as connection:
            await connection.execute(INSERT, ROWS[:1])
            await connection.execute(INSERT, ROWS[:1])

    # The api tells a taken serial by SQLAlchemy's IntegrityError (and draws another).
    with pytest.raises(IntegrityError) as caught:
        await insert_twice()
    assert isinstance(caught.value.orig, sqlite3.IntegrityError)
    assert "direct_item.name" in str(caught.value)
    direct, _ = await both(db, SELECT)
    assert direct == []
