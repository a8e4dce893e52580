"""Prebuilt statements run on SQLite's own connection, without SQLAlchemy's execution pipeline.

A hot path's statement is built once (``prebuilt``) and compiled once by SQLAlchemy for
SQLite, with its column types' own conversions (dates, JSON): running it is then one
``sqlite3`` call, about 0.02 ms here, where SQLAlchemy's async engine spends 0.1-0.2 ms
per statement on cache keys, an execution context, a result object and greenlet switches.
The transaction (its BEGIN, the write turn, commit and rollback) stays SQLAlchemy's; any
other statement, and every statement on PostgreSQL, runs through SQLAlchemy as before.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Executable
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect, IteratorResult, Result
from sqlalchemy.engine.result import SimpleResultMetaData
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement, Select
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert

S = TypeVar("S", bound=Executable)
Params = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None
Processor = Callable[[Any], Any] | None
Rows = Result[*tuple[Any, ...]]

_DIALECT: Dialect = sqlite.dialect()
# How SQLAlchemy marks an IN list whose length is known only when the statement runs.
_EXPANDING = re.compile(r"\(__\[POSTCOMPILE_(\w+)\]\)")


class _Compiled:
    """One SQL text with the conversion of each positional parameter, in order."""

    def __init__(self, compiled: SQLCompiler) -> None:
        self.sql = compiled.string
        names = compiled.positiontup or []
        binds = [compiled.binds[name] for name in names]
        self.names = names
        self.expanding = {n for n, bind in zip(names, binds, strict=True) if bind.expanding}
        self.constants = {n: b.value for n, b in zip(names, binds, strict=True) if not b.required}
        self.processors: list[Processor] = [
            bind.type.dialect_impl(_DIALECT).bind_processor(_DIALECT) for bind in binds
        ]
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise ValueError("a direct statement needs every value given, not Python defaults")
        self._sized: dict[tuple[int, ...], str] = {}

    def values(self, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        """The SQL for *params* (IN lists expanded) and its positional values, converted."""
        values: list[Any] = []
        sizes: list[int] = []
        for name, process in zip(self.names, self.processors, strict=True):
            value: Any = params[name] if name in params else self.constants[name]
            if name in self.expanding:
                sizes.append(len(value))
                values.extend(process(v) if process else v for v in value)
            else:
                values.append(process(value) if process else value)
        if not sizes:
            return self.sql, values
        key = tuple(sizes)
        sql = self._sized.get(key)
        if sql is None:
            counts = iter(sizes)
            sql = _EXPANDING.sub(lambda _: "(" + ", ".join("?" * next(counts)) + ")", self.sql)
            self._sized[key] = sql
        return sql, values

    def many(self, rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
        """Positional values of each row (no IN lists: executemany takes one SQL text)."""
        pairs = list(zip(self.names, self.processors, strict=True))
        return [[process(row[n]) if process else row[n] for n, process in pairs] for row in rows]


class _Plan:
    """How one prebuilt statement runs directly: compiled per set of inserted columns."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, ...], _Compiled] = {}
        self.processors: list[Processor] = []
        self.metadata: SimpleResultMetaData | None = None
        if isinstance(statement, Select):
            columns = statement.selected_columns
            self.processors = [
                c.type.dialect_impl(_DIALECT).result_processor(_DIALECT, None) for c in columns
            ]
            self.metadata = SimpleResultMetaData(list(columns.keys()))

    def compiled(self, keys: Sequence[str]) -> _Compiled:
        """The statement compiled for these parameter names (they pick an INSERT's columns)."""
        key = tuple(keys) if isinstance(self.statement, Insert) else ()
        found = self._compiled.get(key)
        if found is None:
            compiled = self.statement.compile(dialect=_DIALECT, column_keys=list(key) or None)
            assert isinstance(compiled, SQLCompiler)
            found = self._compiled[key] = _Compiled(compiled)
        return found

    def rows(self, cursor: sqlite3.Cursor) -> list[tuple[Any, ...]]:
        """The cursor's rows with each column's conversion applied."""
        fetched = cursor.fetchall()
        if not any(self.processors):
            return fetched
        pairs = list(enumerate(self.processors))
        return [tuple(p(row[i]) if p else row[i] for i, p in pairs) for row in fetched]


_NO_COLUMNS = SimpleResultMetaData([])
# Prebuilt statements are module constants, never freed: their id() stays theirs.
_PLANS: dict[int, _Plan] = {}


def prebuilt(statement: S) -> S:
    """Mark a module-level statement as built once: on SQLite it runs directly."""
    if not isinstance(statement, ClauseElement):
        raise TypeError(f"not a Core statement: {statement!r}")
    _PLANS[id(statement)] = _Plan(statement)
    return statement


class DirectConnection:
    """A SQLite transaction's connection: prebuilt statements go to ``sqlite3`` itself."""

    def __init__(self, connection: AsyncConnection, raw: sqlite3.Connection) -> None:
        self.connection = connection
        self._raw = raw

    async def execute(self, statement: Executable, parameters: Params = None) -> Rows:
        """Run *statement* (with one set of parameters, or many for executemany)."""
        plan = _PLANS.get(id(statement))
        if plan is None:
            return await self.connection.execute(statement, parameters)
        return self._run(plan, parameters)

    async def scalars(self, statement: Executable, parameters: Params = None) -> Any:
        """The first column of each row."""
        return (await self.execute(statement, parameters)).scalars()

    async def scalar(self, statement: Executable, parameters: Params = None) -> Any:
        """The first column of the first row, or None."""
        return (await self.execute(statement, parameters)).scalar()

    def _run(self, plan: _Plan, parameters: Params) -> Rows:
        sql = ""
        try:
            if parameters is None or isinstance(parameters, Mapping):
                params = parameters or {}
                sql, values = plan.compiled(list(params)).values(params)
                cursor = self._raw.execute(sql, values)
            else:
                compiled = plan.compiled(list(parameters[0]) if parameters else [])
                sql = compiled.sql
                cursor = self._raw.executemany(sql, compiled.many(parameters))
            try:
                rows = plan.rows(cursor) if plan.metadata is not None else []
            finally:
                cursor.close()
        except sqlite3.Error as exc:
            # As SQLAlchemy raises it (IntegrityError, OperationalError...), for the callers
            # that tell a taken key or a full disk from other failures; values never shown.
            raise DBAPIError.instance(
                sql, None, exc, sqlite3.Error, hide_parameters=True, dialect=_DIALECT
            ) from exc
        return IteratorResult(plan.metadata or _NO_COLUMNS, iter(rows))
