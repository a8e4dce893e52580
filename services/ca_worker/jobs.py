"""Reading a job message: its decoded body and the correlation id it carries."""

from __future__ import annotations

import logging
from typing import Any, Protocol, TypeVar

from shared.events import MalformedEvent, decode
from shared.jobs import MalformedJob
from shared.logs import correlation_id
from shared.messaging.base import Message, Reject
from shared.token_states import ImpossibleTransition

log = logging.getLogger(__name__)

J = TypeVar("J", covariant=True)


class JobKind(Protocol[J]):
    """A job type that reads itself from CloudEvent data."""

    def from_data(self, data: dict[str, Any]) -> J: ...


def read_job(message: Message, kind: JobKind[J]) -> tuple[J, str]:
    """The job in *message* and its correlation id (now also this task's); Reject if malformed."""
    try:
        event = decode(message.body)
        job = kind.from_data(event.data)
    except (MalformedEvent, MalformedJob) as exc:
        raise Reject(f"malformed {message.type or 'unnamed'} job: {exc}") from exc
    cid = event.correlation_id or message.correlation_id
    correlation_id.set(cid)
    return job, cid


def acknowledge_impossible(serial: str, refusal: ImpossibleTransition) -> None:
    """Log a job that the token's state refuses; the caller acknowledges it, writing nothing."""
    log.warning(
        "impossible transition; job acknowledged, nothing written",
        extra={"serial": serial, "rollout_state": refusal.state_name, "event": refusal.trigger},
    )
