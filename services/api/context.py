"""What the api's handlers share for the lifetime of the app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

from services.api.enrollment import EnrollmentStore
from services.api.waiter import OutcomeWaiter
from shared.config import Settings
from shared.db.session import Database
from shared.messaging.base import Broker
from shared.messaging.outbox import OutboxRelay

if TYPE_CHECKING:
    from services.api.ratelimit import RateLimiter


@dataclass
class ApiContext:
    """Settings, database, broker, outbox relay, outcome waiter, enrollment store, rate limits."""

    settings: Settings
    db: Database
    broker: Broker
    relay: OutboxRelay
    waiter: OutcomeWaiter
    enrollments: EnrollmentStore
    limiter: RateLimiter | None = None


async def get_context(request: Request) -> ApiContext:
    """The app's context (a FastAPI dependency; a coroutine, so it needs no thread hop)."""
    ctx: ApiContext = request.app.state.ctx
    return ctx
