"""Event handlers and SMTP servers, read again only when a cheap probe says they changed.

The probe runs after each event arrived (events arriving within PROBE_LINGER share one
probe), so an event sees every change the api committed before it, as if the configuration
were read in full each time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.batching import Batcher
from shared.db.direct import prebuilt
from shared.db.models import EventHandler, SmtpServer
from shared.db.session import Database, Executor
from shared.notification.context import load_handlers
from shared.notification.handlers import HandlerSpec
from shared.notification.smtp import SmtpConfig, smtp_config
from shared.security import SecretBox

log = logging.getLogger(__name__)

# Events that arrive within this share one probe: a mail goes out at most this much later,
# and at 150-250 events/s the notifier spends about a third less CPU per event (bench/).
PROBE_LINGER = 0.02


@dataclass(frozen=True)
class Snapshot:
    """Handlers by event, and the SMTP servers (usable, or broken with the reason)."""

    version: tuple[Any, ...] = ()
    handlers: dict[str, list[HandlerSpec]] = field(default_factory=dict)
    servers: dict[str, SmtpConfig] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)
    senders: dict[str, str] = field(default_factory=dict)


_PROBE = prebuilt(
    select(
        select(func.count(EventHandler.id)).scalar_subquery(),
        select(func.sum(EventHandler.id)).scalar_subquery(),
        select(func.max(EventHandler.updated_at)).scalar_subquery(),
        select(func.count(SmtpServer.identifier)).scalar_subquery(),
        select(func.max(SmtpServer.updated_at)).scalar_subquery(),
    )
)


async def _version(session: Executor) -> tuple[Any, ...]:
    """What changes whenever a handler or an SMTP server does."""
    return tuple((await session.execute(_PROBE)).one())


class ConfigCache:
    """The configuration as of the caller's transaction, reloaded only when it changed."""

    def __init__(self, db: Database, box: SecretBox) -> None:
        self._db = db
        self._box = box
        self._snapshot = Snapshot()
        self._probes: Batcher[None, Snapshot] = Batcher(self._probe_many, linger=PROBE_LINGER)

    async def fresh(self) -> Snapshot:
        """The configuration as committed now (one probe for all who ask together)."""
        return await self._probes.submit(None)

    async def _probe_many(self, waiting: list[None]) -> list[Snapshot | Exception]:
        # The probe on a Core connection; a session (ORM) only when there is news to load.
        known = self._snapshot
        async with self._db.read_core() as connection:
            version = await _version(connection)
        if version == known.version:
            return [known] * len(waiting)
        async with self._db.read() as session:
            snapshot = await self.current(session)
        return [snapshot] * len(waiting)

    async def current(self, session: AsyncSession) -> Snapshot:
        """The configuration *session* sees."""
        version = await _version(session)
        if version != self._snapshot.version:
            self._snapshot = await self._load(session, version)
        return self._snapshot

    async def _load(self, session: AsyncSession, version: tuple[Any, ...]) -> Snapshot:
        handlers: dict[str, list[HandlerSpec]] = {}
        for spec in await load_handlers(session):
            for event in spec.events:
                handlers.setdefault(event, []).append(spec)
        servers: dict[str, SmtpConfig] = {}
        broken: dict[str, str] = {}
        senders: dict[str, str] = {}
        for row in await session.scalars(select(SmtpServer)):
            senders[row.identifier] = row.sender
            try:
                servers[row.identifier] = smtp_config(row, self._box)
            except ValueError:
                log.error("SMTP server password does not unseal", extra={"smtp": row.identifier})
                broken[row.identifier] = (
                    f"the password of SMTP server {row.identifier!r} cannot be decrypted "
                    "with this secret key; set it again"
                )
        return Snapshot(version, handlers, servers, broken, senders)
