"""Lets ``POST /token/init`` wait for the CA's outcome, told by ``token.*`` events."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from shared.domain import FINAL_FOR_INIT
from shared.events import MalformedEvent, decode
from shared.messaging.base import Message

log = logging.getLogger(__name__)

Until = Callable[[str, dict[str, Any]], bool]
"""Whether an event (its type and data) ends a wait."""


def final_for_init(_event_type: str, data: dict[str, Any]) -> bool:
    """The wait of ``POST /token/init``: any event telling a state in FINAL_FOR_INIT."""
    return str(data.get("rollout_state", "")) in FINAL_FOR_INIT


class OutcomeWaiter:
    """Futures keyed by token serial, resolved with the event data of a final state."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Future[dict[str, Any]]]] = defaultdict(set)
        self._until: dict[asyncio.Future[dict[str, Any]], Until] = {}

    def expect(self, serial: str, until: Until = final_for_init) -> asyncio.Future[dict[str, Any]]:
        """Register interest before the job is committed, so no event can be missed."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[serial].add(future)
        self._until[future] = until
        return future

    def discard(self, serial: str, future: asyncio.Future[dict[str, Any]]) -> None:
        """Forget *future* (the request has answered)."""
        self._until.pop(future, None)
        futures = self._waiting.get(serial)
        if futures is None:
            return
        futures.discard(future)
        if not futures:
            del self._waiting[serial]

    async def on_event(self, message: Message) -> None:
        """Broker handler for ``token.#`` events."""
        try:
            event = decode(message.body)
        except MalformedEvent:
            log.warning("ignoring a malformed event", extra={"message_id": message.message_id})
            return
        serial = str(event.data.get("serial", ""))
        if serial not in self._waiting:
            return
        for future in self._waiting.get(serial, ()):
            until = self._until.get(future, final_for_init)
            if not future.done() and until(event.type, event.data):
                future.set_result(event.data)

    @property
    def waiting(self) -> int:
        """How many serials are awaited now."""
        return len(self._waiting)
