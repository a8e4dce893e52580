"""privacyIDEA's JSON envelope around every answer."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi.responses import JSONResponse

from services import __version__
from services.api.signing import SIGNATURE_KEY, current_signer
from shared.echo import cut

VERSION = f"certtoken {__version__}"
# result.authentication of a successful login, as privacyIDEA says it.
ACCEPT = "ACCEPT"
# The last bound on an error message, whatever it quotes: each echo is cut shorter already.
MESSAGE_MAX = 1000


def envelope(
    result: dict[str, Any], detail: dict[str, Any] | None = None, *, detail_null: bool = False
) -> dict[str, Any]:
    """The envelope's fields around *result*."""
    return {
        "jsonrpc": "2.0",
        "result": result,
        "detail": None if detail_null else detail or {},
        "id": 1,
        "version": VERSION,
        "time": time.time(),
    }


class SignedJSONResponse(JSONResponse):
    """An envelope carrying privacyIDEA's ``signature`` when the app signs its answers."""

    def render(self, content: Any) -> bytes:
        rendered = super().render(content)
        signer = current_signer.get()
        if signer is None or not isinstance(content, dict) or not content:
            return rendered
        # Signed as a client reads it back (JSON types only), spliced into the rendered text.
        signature = signer.sign(json.loads(rendered))
        return rendered[:-1] + f',"{SIGNATURE_KEY}":"{signature}"}}'.encode()


def ok(
    value: Any,
    detail: dict[str, Any] | None = None,
    status_code: int = 200,
    *,
    authentication: str | None = None,
) -> JSONResponse:
    """A successful answer carrying *value* (and a login's *authentication* verdict)."""
    result: dict[str, Any] = {"status": True, "value": value}
    if authentication is not None:
        result["authentication"] = authentication
    body = {**envelope(result, detail), "versionnumber": __version__}
    return SignedJSONResponse(body, status_code)


def error(status_code: int, code: int, message: str, *, detail_null: bool = False) -> JSONResponse:
    """A failed answer with an error code and a message (``detail`` null if *detail_null*)."""
    text = cut(message, MESSAGE_MAX)
    body = envelope(
        {"status": False, "error": {"code": code, "message": text}}, detail_null=detail_null
    )
    return SignedJSONResponse(body, status_code)
