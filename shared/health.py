"""Health, readiness and Prometheus metrics endpoints, served by every service."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared.db.session import Database
from shared.messaging.base import Broker

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[dict[str, bool]]]


def readiness_check(db: Database, broker: Broker) -> Check:
    """A check that the database answers and the broker is connected."""

    async def check() -> dict[str, bool]:
        database = True
        try:
            async with db.read() as session:
                await session.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("readiness: database unreachable", extra={"error": str(exc)})
            database = False
        return {"database": database, "broker": await broker.ping()}

    return check


def health_routes(check: Check) -> list[Route]:
    """``/healthz``, ``/readyz`` and ``/metrics`` as plain Starlette routes."""

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> JSONResponse:
        checks = await check()
        ready = all(checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, 200 if ready else 503)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, include_in_schema=False),
        Route("/readyz", readyz, include_in_schema=False),
        Route("/metrics", metrics, include_in_schema=False),
    ]


def health_app(check: Check) -> Starlette:
    """A tiny app for the workers, which have no other HTTP surface."""
    return Starlette(routes=health_routes(check))
