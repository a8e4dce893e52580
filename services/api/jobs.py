"""Jobs the api hands the ca_worker after enrollment (their outcome: ``waiter``)."""

from __future__ import annotations

from typing import Any

from services.api.context import ApiContext
from shared.db.models import OutboxMessage
from shared.events import new_event
from shared.logs import correlation_id
from shared.messaging.outbox import outbox_message
from shared.messaging.topology import JOBS_EXCHANGE

SOURCE = "certtoken/api"


def job_row(ctx: ApiContext, kind: str, subject: str, data: dict[str, Any]) -> OutboxMessage:
    """An outbox row for a ``ca.*`` job, to add in the caller's transaction."""
    event = new_event(kind, SOURCE, subject, data, correlation_id.get())
    return outbox_message(JOBS_EXCHANGE, kind, event, ctx.relay.lease)
