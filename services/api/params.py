"""Request parameters from JSON or form bodies, validated into pydantic models.

Every body is read here, within bounds: at most ``MAX_BODY`` bytes (413 past it, before
more is read) and JSON nested at most ``MAX_DEPTH`` deep (400, checked before parsing, so
the parser's recursion never comes near Python's limit). Numbers the api reads are bounded
by the types below, so none reaches the database wider than its columns.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Annotated, Any, TypeVar

from fastapi import Path, Query, Request
from pydantic import BaseModel, BeforeValidator, Field, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.envelope import error
from services.api.errors import ParameterError, PayloadTooLarge
from shared.echo import cut

M = TypeVar("M", bound=BaseModel)

MAX_BODY = 256 * 1024
MAX_DEPTH = 32
# PostgreSQL's INTEGER columns (ids) end at 2^31 - 1; SQLite's go to 2^63 - 1.
MAX_ID = 2**31 - 1
MAX_PAGE = 1_000_000
MAX_PAGESIZE = 1000
FIELD_NAME_MAX = 60

# A database id in a path or a query: beyond MAX_ID there is none, so it is a 400 naming it.
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
QueryId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Page = Annotated[int, Query(ge=1, le=MAX_PAGE)]
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGESIZE)]
# A database id in a body.
BodyId = Annotated[int, Field(ge=1, le=MAX_ID)]

_TRUE = frozenset({"1", "true"})
_FALSE = frozenset({"0", "false"})


def read_flag(value: object) -> object:
    """privacyIDEA's booleans: true/false, 1/0, "1"/"0", "true"/"false"; nothing else."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "":
            return None
        if text in _TRUE | _FALSE:
            return text in _TRUE
    raise ValueError("must be true or false (or 1 or 0)")


# A boolean as privacyIDEA accepts it; an empty form field means "not given".
Flag = Annotated[bool | None, BeforeValidator(read_flag)]

_SURROGATE = re.compile("[\ud800-\udfff]")
# A JSON string (with its escapes) as one token, or one bracket.
_JSON_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def too_deep(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether *raw*'s arrays and objects nest deeper than *limit* (strings do not count)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    brackets = b"".join(m.group() for m in _JSON_TOKENS.finditer(raw) if len(m.group()) == 1)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > limit


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def load_json(raw: bytes | str, field: str = "body") -> Any:
    """JSON from a request; too deep, invalid or out-of-range input is a 400 naming *field*."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if too_deep(data):
        raise ParameterError(f"{field}: JSON nested deeper than {MAX_DEPTH} levels")
    try:
        parsed = json.loads(data, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        # ValueError also covers numbers past Python's digit limit for int().
        raise ParameterError(f"{field}: not valid JSON ({cut(str(exc), 120)})") from None
    if b"\\u" in data:
        # Only an escape can put NUL or a lone surrogate into parsed JSON.
        check_text(parsed, field)
    return parsed


def check_text(data: object, field: str = "body") -> None:
    """400 when a string in *data* holds NUL or an unpaired surrogate (no database stores them)."""
    if isinstance(data, str):
        if "\x00" in data or _SURROGATE.search(data):
            raise ParameterError(f"{field}: text may not hold NUL characters or lone surrogates")
    elif isinstance(data, dict):
        for key, value in data.items():
            check_text(key, field)
            check_text(value, field)
    elif isinstance(data, list):
        for item in data:
            check_text(item, field)


async def read_body(request: Request) -> bytes:
    """The raw body, at most MAX_BODY bytes; a larger one is a 413 before the rest is read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and (len(declared) > 9 or int(declared) > MAX_BODY):
        raise PayloadTooLarge(f"body: larger than {MAX_BODY} bytes")
    body = bytearray()
    # A client that leaves mid-body raises ClientDisconnect here; the app answers it 499.
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise PayloadTooLarge(f"body: larger than {MAX_BODY} bytes")
    return bytes(body)


async def read_params(request: Request) -> dict[str, Any]:
    """The body as a flat dict, whether it came as JSON or form-encoded."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await read_body(request)
    if not raw:
        return {}
    if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return await _form(request, raw)
    data = load_json(raw)
    if not isinstance(data, dict):
        raise ParameterError("body: must be a JSON object")
    return data


async def _form(request: Request, raw: bytes) -> dict[str, Any]:
    """The form fields of *raw*, parsed by Starlette from the bytes already read."""

    async def replay() -> Message:
        return {"type": "http.request", "body": raw, "more_body": False}

    form = await Request(request.scope, replay).form()
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    check_text(fields)
    return fields


class TextGuard:
    """Refuses (400) a path or query holding NUL before any route reads it: no database can."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope["path"] or b"%00" in scope.get("query_string", b"")
        ):
            answer = error(400, 905, "request: the path and query may not hold NUL characters")
            await answer(scope, receive, send)
            return
        await self.app(scope, receive, send)


def validate(model: type[M], data: dict[str, Any]) -> M:
    """Build *model* from *data*; the first problem becomes a 400 naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ParameterError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """A one-line message naming each failing field and why."""
    parts = []
    for err in exc.errors():
        # An unknown key is the caller's text: cut it like any other echo.
        field = cut(".".join(str(p) for p in err["loc"]), FIELD_NAME_MAX) or "body"
        reason = "required" if err["type"] == "missing" else err["msg"]
        parts.append(f"{field}: {reason}")
    return "; ".join(parts)


async def parse(request: Request, model: type[M]) -> M:
    """Read and validate the request body as *model*."""
    return validate(model, await read_params(request))


def body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI ``requestBody`` for a route that parses *model* itself (JSON or form)."""
    schema = model.model_json_schema()
    content = {"schema": schema}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": content,
                "application/x-www-form-urlencoded": content,
            },
        }
    }
