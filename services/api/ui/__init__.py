"""The web UI: static pages under ``/ui/`` that drive the same API every client uses."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import RedirectResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIX = "/ui"
STATIC = Path(__file__).parent / "static"

# No inline script or style anywhere: an injected <script> or style attribute does nothing.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """Adds the UI's security headers to every answer of the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


def mount_ui(app: FastAPI) -> None:
    """Serve the UI at ``/ui/``; ``/`` and ``/ui`` lead there."""

    async def to_ui() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    app.add_api_route("/", to_ui, include_in_schema=False)
    app.add_api_route(PREFIX, to_ui, include_in_schema=False)
    app.mount(PREFIX, SecurityHeaders(StaticFiles(directory=STATIC, html=True)), name="ui")
