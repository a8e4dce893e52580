"""The api service: FastAPI app factory and its lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from services import __version__
from services.api.audit import AuditLog, AuditMiddleware
from services.api.context import ApiContext
from services.api.enrollment import EnrollmentStore
from services.api.envelope import error
from services.api.errors import ApiError, Unavailable
from services.api.middleware import CorrelationMiddleware
from services.api.params import TextGuard
from services.api.ratelimit import RateLimiter, TooManyRequests, too_many_requests
from services.api.routers import (
    audit,
    auth,
    ca,
    caconnector,
    certificate,
    enroll,
    events,
    pkcs12,
    policy,
    realms,
    signature,
    smtpservers,
    system,
    tokens,
    users,
)
from services.api.signing import SigningMiddleware, signer_for
from services.api.ui import mount_ui
from services.api.waiter import OutcomeWaiter
from shared.config import Settings
from shared.db.faults import storage_outage
from shared.db.session import Database
from shared.echo import cut
from shared.health import health_routes, readiness_check
from shared.messaging.base import Broker
from shared.messaging.outbox import OutboxRelay
from shared.messaging.topology import EVENTS_EXCHANGE

log = logging.getLogger(__name__)

# nginx's "client closed request": the caller left before its request was read; no server fault.
CLIENT_CLOSED = 499


def create_app(
    settings: Settings,
    broker: Broker,
    *,
    manage_broker: bool = True,
    db: Database | None = None,
) -> FastAPI:
    """Build the api; it starts (and stops) its relay and event subscription with the app."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_db = db if db is not None else Database.for_settings(settings)
        app.state.signer = await asyncio.to_thread(signer_for, settings)
        if manage_broker:
            await broker.start()
        relay = OutboxRelay(
            own_db,
            broker,
            batch=settings.outbox_batch,
            poll_seconds=settings.outbox_poll_seconds,
            lease_seconds=settings.outbox_lease_seconds,
        )
        waiter = OutcomeWaiter()
        subscription = await broker.subscribe(EVENTS_EXCHANGE, "token.#", waiter.on_event)
        relay.start()
        limiter = rate_limiter(settings, own_db)
        app.state.ctx = ApiContext(
            settings, own_db, broker, relay, waiter, EnrollmentStore(own_db, relay.lease), limiter
        )
        app.state.readiness = readiness_check(own_db, broker)
        app.state.audit = AuditLog(own_db, settings.audit_batch)
        log.info("api started")
        try:
            yield
        finally:
            await subscription.stop()
            await relay.stop()
            if limiter is not None:
                await limiter.stop()
            await app.state.audit.drain()
            if manage_broker:
                await broker.close()
            if db is None:
                await own_db.dispose()
            log.info("api stopped")

    app = FastAPI(
        title="certtoken",
        version=__version__,
        description="Certificate-token enrollment, privacyIDEA-compatible API.",
        lifespan=lifespan,
    )

    async def readiness() -> dict[str, bool]:
        check = app.state.readiness
        result: dict[str, bool] = await check()
        return result

    app.router.routes.extend(health_routes(readiness))
    # FastAPI matches a path against each router in turn, twice per request: the enrollment
    # route, the one under load, goes first (no other router's routes overlap it).
    for module in (
        enroll,
        auth,
        certificate,
        users,
        realms,
        caconnector,
        system,
        ca,
        pkcs12,
        tokens,
        events,
        policy,
        smtpservers,
        audit,
        signature,
    ):
        app.include_router(module.router)
    mount_ui(app)
    _install_error_handlers(app)
    app.add_exception_handler(TooManyRequests, too_many_requests)
    app.add_middleware(TextGuard)  # inside the audit: refusals are recorded too
    app.add_middleware(AuditMiddleware)  # inside the correlation id's scope
    app.add_middleware(CorrelationMiddleware)
    app.add_middleware(SigningMiddleware)  # outermost: every answer, refusals included
    return app


def rate_limiter(settings: Settings, db: Database) -> RateLimiter | None:
    """The per-client limits of ``/auth`` and ``/token/init``, flushing; None when off."""
    if not settings.rate_limit_enabled:
        return None
    limiter = RateLimiter(
        db,
        {"auth": settings.rate_limit_auth, "token_init": settings.rate_limit_token_init},
        settings.rate_limit_window_seconds,
        settings.rate_limit_flush_seconds,
    )
    limiter.start()
    return limiter


def _install_error_handlers(app: FastAPI) -> None:
    """Every error is answered in privacyIDEA's envelope."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error(exc.status_code, exc.code, exc.message, detail_null=exc.detail_null)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body")]
            parts.append(f"{cut('.'.join(loc), 60) or 'request'}: {err.get('msg', 'invalid')}")
        return error(400, 905, "; ".join(parts))

    @app.exception_handler(ClientDisconnect)
    async def client_closed(_: Request, __: ClientDisconnect) -> JSONResponse:
        # Nobody reads this answer; its status is what the access log and the audit record.
        return error(CLIENT_CLOSED, CLIENT_CLOSED, "client closed the connection mid-request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, exc.status_code, str(exc.detail))

    def outage(exc: Exception) -> JSONResponse | None:
        # A database going away or out of disk surfaces wrapped by SQLAlchemy or as the
        # driver's own socket error (asyncpg connecting): a 503 the client may retry, not a 500.
        reason = storage_outage(exc)
        if reason is None:
            return None
        log.error("storage outage: %s", reason, extra={"error": repr(exc)})
        return error(Unavailable.status_code, Unavailable.code, reason)

    async def storage_error(_: Request, exc: Exception) -> JSONResponse:
        # Answered inside the app: the catch-all below answers too, but after it the server
        # logs a traceback and closes the client's keep-alive connection.
        answer = outage(exc)
        if answer is None:
            raise exc
        return answer

    for kind in (DBAPIError, OSError):
        app.add_exception_handler(kind, storage_error)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        answer = outage(exc)
        if answer is not None:
            return answer
        log.exception("unhandled error")
        return error(500, 903, "internal error; see the server log for the correlation id")
