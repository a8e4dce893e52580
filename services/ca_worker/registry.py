"""Builds CA connectors from their database rows and keeps them loaded."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from services.ca_worker.connectors.base import Connector, PermanentCAError
from services.ca_worker.connectors.local import LocalConnector
from shared.db.models import CAConnector
from shared.db.session import Database

# How long a loaded connector is used before its row is read again for changes.
REFRESH_SECONDS = 2.0


class ConnectorRegistry:
    """Connectors by name; a changed configuration is loaded afresh within seconds."""

    def __init__(self, db: Database, data_dir: Path, passphrase: bytes) -> None:
        self._db = db
        self._data_dir = data_dir
        self._passphrase = passphrase
        self._loaded: dict[str, tuple[str, Connector]] = {}
        self._checked: dict[str, float] = {}

    async def get(self, name: str) -> Connector:
        """The connector called *name*; PermanentCAError when it is not configured."""
        cached = self._loaded.get(name)
        if cached is not None and time.monotonic() - self._checked[name] < REFRESH_SECONDS:
            return cached[1]
        async with self._db.read() as session:
            row = await session.get(CAConnector, name)
        if row is None:
            self._loaded.pop(name, None)
            raise PermanentCAError(f"no CA connector named {name!r}")
        version = json.dumps([row.type, row.options, row.cacert], sort_keys=True)
        if cached is None or cached[0] != version:
            # Decrypting the key is deliberately slow: keep it off the event loop.
            connector = await asyncio.to_thread(self._build, row)
            self._loaded[name] = (version, connector)
        self._checked[name] = time.monotonic()
        return self._loaded[name][1]

    def _build(self, row: CAConnector) -> Connector:
        if row.type == "local":
            return LocalConnector.load(row.name, row.options, self._data_dir, self._passphrase)
        raise PermanentCAError(f"CA connector {row.name!r} has unsupported type {row.type!r}")
