"""Request parameters from JSON or form bodies, validated into pydantic models."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from services.api.errors import ParameterError

M = TypeVar("M", bound=BaseModel)

MAX_BODY = 256 * 1024


async def read_params(request: Request) -> dict[str, Any]:
    """The body as a flat dict, whether it came as JSON or form-encoded."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ParameterError(f"body: larger than {MAX_BODY} bytes")
    if not raw:
        return {}
    if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        return {key: value for key, value in form.items() if isinstance(value, str)}
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParameterError(f"body: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ParameterError("body: must be a JSON object")
    return data


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
        field = ".".join(str(p) for p in err["loc"]) or "body"
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
