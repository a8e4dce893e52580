"""privacyIDEA's JSON envelope around every answer."""

from __future__ import annotations

import time
from typing import Any

from fastapi.responses import JSONResponse

from services import __version__
from shared.echo import cut

VERSION = f"certtoken {__version__}"
# The last bound on an error message, whatever it quotes: each echo is cut shorter already.
MESSAGE_MAX = 1000


def envelope(result: dict[str, Any], detail: dict[str, Any] | None = None) -> dict[str, Any]:
    """The envelope's fields around *result*."""
    return {
        "jsonrpc": "2.0",
        "result": result,
        "detail": detail or {},
        "id": 1,
        "version": VERSION,
        "time": time.time(),
    }


def ok(value: Any, detail: dict[str, Any] | None = None, status_code: int = 200) -> JSONResponse:
    """A successful answer carrying *value*."""
    return JSONResponse(envelope({"status": True, "value": value}, detail), status_code)


def error(status_code: int, code: int, message: str) -> JSONResponse:
    """A failed answer with an error code and a message."""
    text = cut(message, MESSAGE_MAX)
    body = envelope({"status": False, "error": {"code": code, "message": text}})
    return JSONResponse(body, status_code)
