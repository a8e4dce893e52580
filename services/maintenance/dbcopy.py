"""A consistent copy of the database out of a running system, and its load into an empty one.

SQLite is copied whole with ``VACUUM INTO`` (one read transaction: a snapshot that running
writers do not disturb, in WAL mode without blocking them). PostgreSQL is exported table by
table in one REPEATABLE READ, read-only transaction (every table as of the same instant) as
JSON lines, through the same driver the services use: no ``pg_dump`` whose major version must
match the server's, and the rows load into either kind of database, so a backup of one kind
restores into the other. Loading migrates the empty database to the backup's revision, inserts
the rows parent tables first and sets PostgreSQL's sequences past the highest ids.
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import (
    JSON,
    DateTime,
    LargeBinary,
    MetaData,
    Table,
    create_engine,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection

from shared.db.session import create_engine as create_async

SQLITE_MEMBER = "database/certtoken.sqlite3"
TABLES_DIR = "database/tables"
VERSION_TABLE = "alembic_version"
_BATCH = 500
# CRL numbers a CA may have signed between the backup and the restore: a restored CA
# continues past them, so no CRL number is ever used for two different CRLs (RFC 5280 5.2.3).
CRL_NUMBER_GAP = 1_000_000

Progress = Callable[[str], None]


class LoadError(Exception):
    """The backup's database does not fit this certtoken or the target."""


@dataclass
class Snapshot:
    """What a database copy holds: its kind, revision, row counts and files."""

    kind: str
    revision: str | None
    counts: dict[str, int] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def kind_of(url: str) -> str:
    """``sqlite`` or ``postgresql``."""
    return "sqlite" if url.startswith("sqlite") else "postgresql"


# --- copy out ---------------------------------------------------------------------------------


def snapshot_sqlite(database: Path, workdir: Path) -> Snapshot:
    """The SQLite file *database* as of one instant, in *workdir*."""
    copy = workdir / "certtoken.sqlite3"
    source = sqlite3.connect(database, timeout=30)
    try:
        source.execute("VACUUM INTO ?", (str(copy),))
    finally:
        source.close()
    revision, counts = sqlite_facts(copy)
    return Snapshot("sqlite", revision, counts, {SQLITE_MEMBER: copy})


def sqlite_facts(path: Path) -> tuple[str | None, dict[str, int]]:
    """The alembic revision and the row count of each table of the SQLite file *path*."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        counts = {
            name: conn.execute(f"SELECT count(*) FROM {_quoted(name)}").fetchone()[0]  # noqa: S608
            for name in names
            if name != VERSION_TABLE
        }
        revision = None
        if VERSION_TABLE in names:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = row[0] if row else None
    finally:
        conn.close()
    return revision, dict(sorted(counts.items()))


def _quoted(name: str) -> str:
    """An SQL identifier, quoted (a table name read from the database's own catalogue)."""
    return '"' + name.replace('"', '""') + '"'


async def snapshot_postgresql(url: str, workdir: Path, progress: Progress) -> Snapshot:
    """Every table of the PostgreSQL database *url* as of one instant, as JSON lines."""
    engine = create_async(url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
            async with conn.begin():
                return await conn.run_sync(_export, workdir, progress)
    finally:
        await engine.dispose()


def _export(conn: Connection, workdir: Path, progress: Progress) -> Snapshot:
    metadata = MetaData()
    metadata.reflect(conn)
    snapshot = Snapshot("postgresql", _revision(conn, metadata))
    (workdir / "tables").mkdir(mode=0o700)
    for table in metadata.sorted_tables:
        if table.name == VERSION_TABLE:
            continue
        path = workdir / "tables" / f"{table.name}.jsonl"
        with path.open("w", encoding="utf-8") as out:
            snapshot.counts[table.name] = _export_table(conn, table, out)
        snapshot.files[f"{TABLES_DIR}/{table.name}.jsonl"] = path
        progress(f"table {table.name}: {snapshot.counts[table.name]} rows")
    snapshot.counts = dict(sorted(snapshot.counts.items()))
    return snapshot


def _export_table(conn: Connection, table: Table, out: IO[str]) -> int:
    kinds = [_kind(column.type) for column in table.columns]
    header = {"table": table.name, "columns": [c.name for c in table.columns], "kinds": kinds}
    out.write(json.dumps(header) + "\n")
    count = 0
    result = conn.execution_options(yield_per=_BATCH).execute(select(table))
    for row in result:
        out.write(json.dumps([_encode(v, k) for v, k in zip(row, kinds, strict=True)]) + "\n")
        count += 1
    return count


def _revision(conn: Connection, metadata: MetaData) -> str | None:
    if VERSION_TABLE not in metadata.tables:
        return None
    value = conn.scalar(select(metadata.tables[VERSION_TABLE].c.version_num))
    return str(value) if value is not None else None


def _kind(type_: Any) -> str:
    if isinstance(type_, DateTime):
        return "datetime"
    if isinstance(type_, LargeBinary):
        return "bytes"
    if isinstance(type_, JSON):
        return "json"
    return "plain"


def _encode(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "datetime":
        return value.isoformat()
    if kind == "bytes":
        return base64.b64encode(value).decode()
    return value


def _decode(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "datetime":
        return datetime.fromisoformat(value)
    if kind == "bytes":
        return base64.b64decode(value)
    return value


# --- load -------------------------------------------------------------------------------------

Rows = Callable[[str], Iterator[dict[str, Any]]]


def jsonl_rows(directory: Path) -> Rows:
    """The rows of each table exported as JSON lines in *directory*."""

    def rows(name: str) -> Iterator[dict[str, Any]]:
        path = directory / f"{name}.jsonl"
        if not path.exists():
            return
        with path.open(encoding="utf-8") as lines:
            header = json.loads(next(lines))
            columns, kinds = header["columns"], header["kinds"]
            for line in lines:
                values = json.loads(line)
                yield {c: _decode(v, k) for c, v, k in zip(columns, values, kinds, strict=True)}

    return rows


def sqlite_rows(path: Path) -> Generator[Rows, None, None]:
    """The rows of each table of the SQLite file *path* (a generator to close it after)."""
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            metadata = MetaData()
            metadata.reflect(conn)

            def rows(name: str) -> Iterator[dict[str, Any]]:
                table = metadata.tables.get(name)
                if table is None:
                    return
                for row in conn.execute(select(table)):
                    yield dict(row._mapping)

            yield rows
    finally:
        engine.dispose()


async def is_empty(url: str) -> bool:
    """Whether the database at *url* has no table at all."""
    engine = create_async(url) if url.startswith("sqlite") else create_async(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    finally:
        await engine.dispose()
    return not names


async def load_rows(url: str, rows: Rows, counts: dict[str, int], progress: Progress) -> None:
    """Insert the backup's rows into the database at *url*, migrated to the backup's revision."""
    engine = create_async(url) if url.startswith("sqlite") else create_async(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_load, rows, counts, progress)
    finally:
        await engine.dispose()


def _load(conn: Connection, rows: Rows, counts: dict[str, int], progress: Progress) -> None:
    metadata = MetaData()
    metadata.reflect(conn)
    unknown = sorted(set(counts) - set(metadata.tables))
    if unknown:
        raise LoadError(f"tables {', '.join(unknown)} of the backup are not in this schema")
    for table in metadata.sorted_tables:
        if table.name == VERSION_TABLE or table.name not in counts:
            continue
        for column in table.columns:
            if isinstance(column.type, JSON):
                # SQL NULL stays SQL NULL (not the JSON text "null").
                column.type.none_as_null = True
        batch: list[dict[str, Any]] = []
        for row in rows(table.name):
            extra = set(row) - set(table.columns.keys())
            if extra:
                raise LoadError(f"table {table.name}: columns {sorted(extra)} not in this schema")
            batch.append(row)
            if len(batch) >= _BATCH:
                conn.execute(table.insert(), batch)
                batch = []
        if batch:
            conn.execute(table.insert(), batch)
        progress(f"table {table.name}: {counts[table.name]} rows")
    if conn.dialect.name == "postgresql":
        _reset_sequences(conn, metadata)


def _reset_sequences(conn: Connection, metadata: MetaData) -> None:
    """Make each serial column's sequence continue after the highest id loaded."""
    for table in metadata.sorted_tables:
        for column in table.primary_key.columns:
            sequence = conn.scalar(
                text("SELECT pg_get_serial_sequence(:table, :column)"),
                {"table": table.name, "column": column.name},
            )
            if sequence is None:
                continue
            highest = conn.scalar(select(func.max(column)))
            if highest is not None:
                conn.execute(text("SELECT setval(:s, :v)"), {"s": sequence, "v": highest})


async def after_load(url: str) -> dict[str, int]:
    """Move restored CRL numbers past any signed since the backup; the row counts now."""
    engine = create_async(url) if url.startswith("sqlite") else create_async(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(_after_load)
    finally:
        await engine.dispose()


def _after_load(conn: Connection) -> dict[str, int]:
    metadata = MetaData()
    metadata.reflect(conn)
    publication = metadata.tables.get("ca_publication")
    if publication is not None and {"crl_number", "crl_next_update", "crl_this_update"} <= set(
        publication.columns.keys()
    ):
        # An early next update makes the ca_worker sign a CRL with the new number at start.
        conn.execute(
            publication.update().values(
                crl_number=publication.c.crl_number + CRL_NUMBER_GAP,
                crl_next_update=publication.c.crl_this_update,
            )
        )
    generations = metadata.tables.get("ca_generation")
    if generations is not None:
        # An earlier generation's CRLs are numbered on their own: the same gap.
        conn.execute(
            generations.update()
            .where(generations.c.retired_at.is_(None))
            .values(
                crl_number=generations.c.crl_number + CRL_NUMBER_GAP,
                crl_next_update=generations.c.crl_this_update,
            )
        )
    return {
        name: int(conn.scalar(select(func.count()).select_from(table)) or 0)
        for name, table in sorted(metadata.tables.items())
        if name != VERSION_TABLE
    }


async def drop_everything(url: str) -> None:
    """Drop every table of the database at *url* (undoing a failed load into it)."""
    engine = create_async(url) if url.startswith("sqlite") else create_async(url, pool_size=1)
    try:
        async with engine.begin() as conn:

            def drop(sync: Connection) -> None:
                metadata = MetaData()
                metadata.reflect(sync)
                metadata.drop_all(sync)

            await conn.run_sync(drop)
    finally:
        await engine.dispose()


def place_sqlite(copy: Path, target: Path) -> None:
    """Put the SQLite file *copy* at *target* (owner-only, whole or not at all)."""
    temporary = target.with_name(f".{target.name}.restore")
    shutil.copyfile(copy, temporary)
    temporary.chmod(0o600)
    temporary.replace(target)
