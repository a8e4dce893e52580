"""The audit log: one row per API call, recorded by one middleware, written in batches."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import insert
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.ui import PREFIX as UI_PREFIX
from shared.batching import Batcher
from shared.db.direct import prebuilt
from shared.db.models import AuditEntry, utcnow
from shared.db.session import Database
from shared.logs import correlation_id

log = logging.getLogger(__name__)

# Probes and scrapes are noise, not calls anybody needs to account for.
UNAUDITED = frozenset({"/healthz", "/readyz", "/metrics"})
STATE_KEY = "audit"
INFO_MAX = 255
_ERROR_BODY_MAX = 4096
_NOTE_FIELDS = ("serial", "user", "realm", "info")
_INSERT = prebuilt(insert(AuditEntry))  # built once, not per flush
# privacyIDEA's privacyidea_server: which machine answered.
SERVER_NAME = socket.gethostname()


@dataclass
class Record:
    """What the audit keeps of one call; never a request body."""

    time: datetime
    role: str
    caller: str
    action: str
    serial: str
    username: str
    realm: str
    success: bool
    status: int
    info: str
    client: str
    correlation_id: str
    duration: float
    user_agent: str
    server: str


def note(request: Request, **fields: str) -> None:
    """Let a route add ``serial``, ``user``, ``realm`` or ``info`` to its call's audit row."""
    note_scope(request.scope, **fields)


def note_scope(scope: Scope, **fields: str) -> None:
    """:func:`note` on an ASGI scope."""
    unknown = set(fields) - set(_NOTE_FIELDS)
    if unknown:
        raise ValueError(f"not an audit field: {sorted(unknown)}")
    notes: dict[str, str] = scope.setdefault("state", {}).setdefault(STATE_KEY, {})
    notes.update(fields)


def action_name(method: str, route: str | None) -> str:
    """``METHOD /route/<template>`` as privacyIDEA writes it; unmatched paths are not recorded."""
    template = (route or "(unmatched)").replace("{", "<").replace("}", ">")
    return f"{method} {template}"


def error_message(body: bytes) -> str:
    """The message of an error envelope, or "" when *body* is not one."""
    try:
        doc = json.loads(body)
        message = doc["result"]["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return ""
    return message if isinstance(message, str) else ""


def build_record(scope: Scope, status: int, started: datetime, body: bytes, cid: str) -> Record:
    """The audit row for a finished call from its scope, state and error body."""
    state: dict[str, Any] = scope.get("state") or {}
    notes: dict[str, str] = state.get(STATE_KEY) or {}
    identity = state.get("identity")
    path_params: dict[str, Any] = scope.get("path_params") or {}
    query = _query(scope)
    route = getattr(scope.get("route"), "path", None)
    success = status < 400
    info = notes.get("info") or ("" if success else error_message(body))
    return Record(
        time=started,
        role=getattr(identity, "role", ""),
        caller=getattr(identity, "username", ""),
        action=action_name(scope["method"], route),
        serial=_field(notes.get("serial") or path_params.get("serial") or query.get("serial"), 40),
        username=_field(notes.get("user") or query.get("user"), 120),
        realm=_field(notes.get("realm") or query.get("realm"), 120),
        success=success,
        status=status,
        info=_field(info, INFO_MAX),
        client=_field((scope.get("client") or ("", 0))[0], 64),
        correlation_id=cid,
        duration=max(0.0, (utcnow() - started).total_seconds()),
        user_agent=_field(_header(scope, b"user-agent"), 255),
        server=SERVER_NAME,
    )


def _header(scope: Scope, name: bytes) -> str:
    """The first value of header *name* (lower case), or ""."""
    for key, value in scope.get("headers") or ():
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def _query(scope: Scope) -> dict[str, str]:
    """The query string's single values (GET filters, never secrets: those go in bodies)."""
    raw = scope.get("query_string", b"").decode("latin-1")
    return dict(parse_qsl(raw))


def _field(value: object, limit: int) -> str:
    """A text column's value, cut to its size; NUL (which PostgreSQL refuses) made visible."""
    text = "" if value is None else str(value).replace("\x00", "\\x00")
    return text if len(text) <= limit else text[: limit - 1] + "…"


GATHER_SECONDS = 0.1


class AuditLog:
    """Writes records after their responses went out; what arrives together is one insert."""

    def __init__(self, db: Database, max_batch: int = 500) -> None:
        self._db = db
        # What arrives within GATHER_SECONDS goes in one insert: a few audit transactions a
        # second leave SQLite's write lock to the enrollments.
        self._batcher: Batcher[Record, None] = Batcher(self._flush, max_batch, GATHER_SECONDS)
        self._tasks: set[asyncio.Task[None]] = set()

    def record(self, record: Record) -> None:
        """Queue *record* for writing; does not wait."""
        task = asyncio.create_task(self._batcher.submit(record))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def drain(self) -> None:
        """Wait until every queued record is written (or has failed and was logged)."""
        # Nothing more is coming to gather: what is queued is written at once.
        self._batcher.hurry()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("audit record lost: %s", task.exception())

    async def _flush(self, records: list[Record]) -> list[None]:
        # Flat fields: a copy of each record's own dict (asdict would deep-copy every value).
        rows = [dict(vars(r)) for r in records]
        async with self._db.write_core() as connection:
            await connection.execute(_INSERT, rows)
        return [None] * len(records)


def _unaudited(path: str) -> bool:
    """Probes and the UI's static files: no call of the API."""
    return path in UNAUDITED or path == "/" or path == UI_PREFIX or path.startswith(UI_PREFIX + "/")


class AuditMiddleware:
    """Records every HTTP call except probes; keeps only an error answer's message."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _unaudited(scope["path"]):
            await self.app(scope, receive, send)
            return
        started = utcnow()
        status = 500
        error_body = bytearray()

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status >= 400:
                room = _ERROR_BODY_MAX - len(error_body)
                if room > 0:
                    error_body.extend(message.get("body", b"")[:room])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        except Exception:
            note_scope(scope, info="internal error")
            raise
        finally:
            audit: AuditLog | None = getattr(scope["app"].state, "audit", None)
            if audit is not None:
                audit.record(
                    build_record(scope, status, started, bytes(error_body), correlation_id.get())
                )
