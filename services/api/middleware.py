"""Correlation ids, access log and request metrics, as plain ASGI middleware."""

from __future__ import annotations

import logging
import re
import time

from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.logs import correlation_id, new_correlation_id

log = logging.getLogger("certtoken.access")

HEADER = b"x-correlation-id"
_VALID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")

REQUEST_SECONDS = Histogram(
    "certtoken_api_request_seconds",
    "Time to answer an API request",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class CorrelationMiddleware:
    """Takes the caller's X-Correlation-ID (or makes one) for logs, messages and the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(HEADER, b"")
        cid = given.decode() if _VALID.match(given) else new_correlation_id()
        token = correlation_id.set(cid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (HEADER, cid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            REQUEST_SECONDS.labels(scope["method"], route, str(status)).observe(elapsed)
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "ms": round(elapsed * 1000, 2),
                        "client": (scope.get("client") or ("", 0))[0],
                    },
                )
            correlation_id.reset(token)
