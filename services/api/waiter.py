"""The one bounded wait for a token's outcome: its ``token.*`` event, or the token as stored."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.db.models import Token
from shared.db.session import Database
from shared.domain import FINAL_FOR_INIT, EventType, RolloutState
from shared.events import MalformedEvent, decode
from shared.messaging.base import Message

if TYPE_CHECKING:
    from services.api.context import ApiContext

log = logging.getLogger(__name__)

# How often a waiting request re-reads the token, in case its outcome event was missed.
RECHECK_SECONDS = 1.0
# The stored state of a token that no longer exists.
DELETED = "deleted"
# The fields of a token (told by an event or read from the store) that an answer repeats.
ANSWER_KEYS = (
    "serial",
    "rollout_state",
    "certificate",
    "reason",
    "request_id",
    "revocation_reason",
)


@dataclass(frozen=True)
class Until:
    """What ends a wait: an event (its type and data), or the token's stored detail."""

    event: Callable[[str, dict[str, Any]], bool]
    stored: Callable[[dict[str, Any]], bool]


def states(*names: str) -> Until:
    """A wait that ends when the token is in one of *names*, as told or as stored."""
    wanted = frozenset(names)

    def told(_event_type: str, data: dict[str, Any]) -> bool:
        return str(data.get("rollout_state", "")) in wanted

    return Until(told, lambda detail: str(detail["rollout_state"]) in wanted)


def retired(kind: EventType) -> Until:
    """The wait of a revocation or a deletion: its event, or the token revoked or gone."""
    stored_state = DELETED if kind == EventType.TOKEN_DELETE else RolloutState.REVOKED.value

    def told(event: str, _data: dict[str, Any]) -> bool:
        return event == kind.value

    return Until(told, lambda detail: detail["rollout_state"] == stored_state)


FINAL_FOR_INIT_WAIT = states(*FINAL_FOR_INIT)
"""The wait of ``POST /token/init``."""


@dataclass(eq=False)
class Expected:
    """An awaited outcome of one token, registered before its job is committed."""

    serial: str
    until: Until
    future: asyncio.Future[dict[str, Any]] = field(repr=False)


@dataclass(frozen=True)
class Outcome:
    """What a wait found: the answer's detail and whether the awaited outcome came."""

    detail: dict[str, Any]
    ended: bool


def answer_detail(data: dict[str, Any]) -> dict[str, Any]:
    """The fields of an event or a stored token that an answer repeats."""
    return {key: data[key] for key in ANSWER_KEYS if data.get(key)}


async def stored_detail(db: Database, serial: str) -> dict[str, Any]:
    """The token's stored state as an answer's detail (``deleted`` once it is gone)."""
    async with db.read() as session:
        token = await session.get(Token, serial)
    if token is None:
        return {"serial": serial, "rollout_state": DELETED}
    stored = {**token.info, "serial": serial, "rollout_state": token.rollout_state}
    stored["certificate"] = token.certificate
    return answer_detail(stored)


class OutcomeWaiter:
    """Outcomes awaited by token serial, resolved by the events that tell them."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[Expected]] = defaultdict(set)

    def expect(self, serial: str, until: Until = FINAL_FOR_INIT_WAIT) -> Expected:
        """Register interest before the job is committed, so no event can be missed."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        expected = Expected(serial, until, future)
        self._waiting[serial].add(expected)
        return expected

    def discard(self, expected: Expected) -> None:
        """Forget *expected* (the request has answered)."""
        waiting = self._waiting.get(expected.serial)
        if waiting is None:
            return
        waiting.discard(expected)
        if not waiting:
            del self._waiting[expected.serial]

    async def on_event(self, message: Message) -> None:
        """Broker handler for ``token.#`` events."""
        try:
            event = decode(message.body)
        except MalformedEvent:
            log.warning("ignoring a malformed event", extra={"message_id": message.message_id})
            return
        serial = str(event.data.get("serial", ""))
        for expected in self._waiting.get(serial, ()):
            future = expected.future
            if not future.done() and expected.until.event(event.type, event.data):
                future.set_result(event.data)

    @property
    def waiting(self) -> int:
        """How many serials are awaited now."""
        return len(self._waiting)


async def await_outcome(ctx: ApiContext, expected: Expected) -> Outcome:
    """The outcome as its event told it, or as stored: once final, else when the bound ends."""
    deadline = time.monotonic() + ctx.settings.init_wait_seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining > 0:
            with contextlib.suppress(TimeoutError):
                data = await asyncio.wait_for(
                    asyncio.shield(expected.future), min(remaining, RECHECK_SECONDS)
                )
                return Outcome(answer_detail(data), ended=True)
        # No event yet: look at the token itself, in case its event was missed.
        detail = await stored_detail(ctx.db, expected.serial)
        if expected.until.stored(detail):
            return Outcome(detail, ended=True)
        if time.monotonic() >= deadline:
            return Outcome(detail, ended=False)
