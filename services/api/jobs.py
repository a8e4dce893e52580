"""Jobs the api hands the ca_worker after enrollment, and the bounded wait for their outcome."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from services.api.context import ApiContext
from services.api.waiter import Until
from shared.db.models import OutboxMessage, Token
from shared.events import new_event
from shared.logs import correlation_id
from shared.messaging.outbox import outbox_message
from shared.messaging.topology import JOBS_EXCHANGE

SOURCE = "certtoken/api"


def job_row(ctx: ApiContext, kind: str, subject: str, data: dict[str, Any]) -> OutboxMessage:
    """An outbox row for a ``ca.*`` job, to add in the caller's transaction."""
    event = new_event(kind, SOURCE, subject, data, correlation_id.get())
    return outbox_message(JOBS_EXCHANGE, kind, event, ctx.relay.lease)


def states(*names: str) -> Until:
    """A wait that ends on an event telling one of *names*."""
    wanted = frozenset(names)

    def until(_event_type: str, data: dict[str, Any]) -> bool:
        return str(data.get("rollout_state", "")) in wanted

    return until


def event_type(name: str) -> Until:
    """A wait that ends on an event of type *name*."""

    def until(event: str, _data: dict[str, Any]) -> bool:
        return event == name

    return until


async def wait_for(
    ctx: ApiContext, future: asyncio.Future[dict[str, Any]]
) -> dict[str, Any] | None:
    """The awaited event's data, or None when the bounded wait ends first."""
    with contextlib.suppress(TimeoutError):
        return await asyncio.wait_for(asyncio.shield(future), ctx.settings.init_wait_seconds)
    return None


async def token_state(ctx: ApiContext, serial: str) -> dict[str, Any]:
    """The token's stored state, for an answer when no event came in time."""
    async with ctx.db.read() as session:
        token = await session.get(Token, serial)
    if token is None:
        return {"serial": serial, "rollout_state": "deleted"}
    detail: dict[str, Any] = {"serial": serial, "rollout_state": token.rollout_state}
    for key in ("reason", "request_id", "revocation_reason"):
        if token.info.get(key):
            detail[key] = token.info[key]
    if token.certificate:
        detail["certificate"] = token.certificate
    return detail


def answer_detail(data: dict[str, Any]) -> dict[str, Any]:
    """The fields of an event that an answer repeats."""
    keys = ("serial", "rollout_state", "certificate", "reason", "request_id", "revocation_reason")
    return {key: data[key] for key in keys if data.get(key)}
