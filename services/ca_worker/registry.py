"""Builds CA connectors from their database rows and keeps them loaded."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from services.ca_worker.connectors.base import Connector, PermanentCAError
from services.ca_worker.connectors.local import LocalConnector
from shared.db.models import CAConnector


class ConnectorRegistry:
    """Connectors by name; a changed configuration is loaded afresh."""

    def __init__(self, data_dir: Path, passphrase: bytes) -> None:
        self._data_dir = data_dir
        self._passphrase = passphrase
        self._loaded: dict[str, tuple[str, Connector]] = {}

    async def get(self, name: str, row: CAConnector | None) -> Connector:
        """The connector for *row*; PermanentCAError when *name* is not configured."""
        if row is None:
            raise PermanentCAError(f"no CA connector named {name!r}")
        version = json.dumps([row.type, row.options, row.cacert], sort_keys=True)
        cached = self._loaded.get(name)
        if cached is not None and cached[0] == version:
            return cached[1]
        # Decrypting the key is deliberately slow: keep it off the event loop.
        connector = await asyncio.to_thread(self._build, row)
        self._loaded[name] = (version, connector)
        return connector

    def _build(self, row: CAConnector) -> Connector:
        if row.type == "local":
            return LocalConnector.load(row.name, row.options, self._data_dir, self._passphrase)
        raise PermanentCAError(f"CA connector {row.name!r} has unsupported type {row.type!r}")
