"""Lets ``POST /token/init`` wait for the CA's outcome, told by ``token.*`` events."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from shared.domain import FINAL_FOR_INIT
from shared.events import MalformedEvent, decode
from shared.messaging.base import Message

log = logging.getLogger(__name__)


class OutcomeWaiter:
    """Futures keyed by token serial, resolved with the event data of a final state."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Future[dict[str, Any]]]] = defaultdict(set)

    def expect(self, serial: str) -> asyncio.Future[dict[str, Any]]:
        """Register interest before the job is committed, so no event can be missed."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[serial].add(future)
        return future

    def discard(self, serial: str, future: asyncio.Future[dict[str, Any]]) -> None:
        """Forget *future* (the request has answered)."""
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
        state = str(event.data.get("rollout_state", ""))
        if serial not in self._waiting or state not in FINAL_FOR_INIT:
            return
        for future in self._waiting.get(serial, ()):
            if not future.done():
                future.set_result(event.data)

    @property
    def waiting(self) -> int:
        """How many serials are awaited now."""
        return len(self._waiting)
