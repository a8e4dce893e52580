"""Builds CA connectors and their templates from their database rows and keeps them loaded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from services.ca_worker.connectors.base import Connector, PermanentCAError, Template
from services.ca_worker.connectors.cfssl import CfsslConnector
from services.ca_worker.connectors.local import LocalConnector
from shared.ca_hosts import HostPolicy
from shared.ca_material import not_ready_reason
from shared.ca_templates import DEFAULT_TEMPLATE, template_options
from shared.cfssl_options import cfssl_options
from shared.db.models import CAConnector, CATemplate
from shared.db.session import Database
from shared.security import SecretBox

log = logging.getLogger(__name__)

# How long a loaded connector is used before its row is read again for changes.
REFRESH_SECONDS = 2.0

Factory = Callable[[CAConnector, dict[str, str]], Connector]
_FACTORIES: dict[str, Factory] = {}


def register_connector_type(type_name: str, factory: Factory) -> None:
    """Add a connector type: *factory* builds it from its row and its opened secrets."""
    _FACTORIES[type_name] = factory


@dataclass(frozen=True)
class _Loaded:
    version: str
    connector: Connector
    templates: dict[str, dict[str, object]]


class ConnectorRegistry:
    """Connectors by name; a changed configuration is loaded afresh within seconds."""

    def __init__(
        self,
        db: Database,
        data_dir: Path,
        passphrase: bytes,
        box: SecretBox | None = None,
        hosts: HostPolicy | None = None,
        public_url: str = "",
    ) -> None:
        self._db = db
        self._public_url = public_url
        self._hosts = hosts or HostPolicy()
        self._data_dir = data_dir
        self._passphrase = passphrase
        self._box = box
        self._loaded: dict[str, _Loaded] = {}
        self._checked: dict[str, float] = {}

    async def get(self, name: str) -> Connector:
        """The connector called *name*; PermanentCAError when it is not configured."""
        return (await self._entry(name)).connector

    async def template(self, ca: str, name: str) -> Template:
        """Template *name* of connector *ca*; the built-in default when unnamed."""
        entry = await self._entry(ca)
        key = name or DEFAULT_TEMPLATE
        options = entry.templates.get(key)
        if options is None and key != DEFAULT_TEMPLATE:
            # A template added in the last seconds: look again before refusing.
            options = (await self._entry(ca, fresh=True)).templates.get(key)
        if options is None:
            if key == DEFAULT_TEMPLATE:
                return Template()
            raise PermanentCAError(f"template: CA connector {ca!r} has no template {key!r}")
        try:
            return Template.from_options(key, template_options(dict(options)))
        except ValueError as exc:
            raise PermanentCAError(f"template {key!r}: {exc}") from None

    async def local_names(self) -> list[str]:
        """The names of the local CAs configured now (and ready: their certificate installed)."""
        async with self._db.read() as session:
            rows = await session.execute(
                select(CAConnector.name, CAConnector.options).where(CAConnector.type == "local")
            )
            return [name for name, options in rows if not_ready_reason(name, options) is None]

    def loaded_generation(self, name: str) -> int | None:
        """The generation of local CA *name* as last loaded here; None when not loaded."""
        entry = self._loaded.get(name)
        if entry is None or not isinstance(entry.connector, LocalConnector):
            return None
        return entry.connector.generation

    def load_local(self, name: str, options: dict[str, object]) -> LocalConnector:
        """A local CA's earlier generation, from the key store options kept with it (blocking)."""
        return LocalConnector.load(
            name, options, self._data_dir, self._passphrase, self._public_url
        )

    async def close(self) -> None:
        """Close every loaded connector."""
        for entry in self._loaded.values():
            with contextlib.suppress(Exception):
                await entry.connector.close()
        self._loaded.clear()

    async def _entry(self, name: str, *, fresh: bool = False) -> _Loaded:
        cached = self._loaded.get(name)
        age = time.monotonic() - self._checked.get(name, 0.0)
        if cached is not None and not fresh and age < REFRESH_SECONDS:
            return cached
        async with self._db.read() as session:
            row = await session.get(CAConnector, name)
            templates = {
                t.name: dict(t.options)
                for t in await session.scalars(select(CATemplate).where(CATemplate.ca == name))
            }
        if row is None:
            stale = self._loaded.pop(name, None)
            if stale is not None:
                await stale.connector.close()
            raise PermanentCAError(f"no CA connector named {name!r}")
        version = json.dumps([row.type, row.options, row.cacert, row.secrets], sort_keys=True)
        if cached is None or cached.version != version:
            # Decrypting the key is deliberately slow: keep it off the event loop.
            connector = await asyncio.to_thread(self._build, row)
            if cached is not None:
                await cached.connector.close()
            cached = _Loaded(version, connector, templates)
        elif cached.templates != templates:
            cached = _Loaded(version, cached.connector, templates)
        self._loaded[name] = cached
        self._checked[name] = time.monotonic()
        return cached

    def _build(self, row: CAConnector) -> Connector:
        if row.type == "local":
            return LocalConnector.load(
                row.name, row.options, self._data_dir, self._passphrase, self._public_url
            )
        if row.type == "cfssl":
            try:
                options = cfssl_options(
                    {k: v for k, v in row.options.items() if not k.startswith("_")}
                )
            except ValueError as exc:
                raise PermanentCAError(f"CA connector {row.name!r}: {exc}") from None
            secrets = self._secrets(row)
            key = secrets.get("auth_key")
            try:
                auth_key = bytes.fromhex(key) if key else None
            except ValueError:
                raise PermanentCAError(
                    f"CA connector {row.name!r}: auth_key is not hexadecimal"
                ) from None
            return CfsslConnector(row.name, options, auth_key, self._hosts)
        factory = _FACTORIES.get(row.type)
        if factory is not None:
            return factory(row, self._secrets(row))
        raise PermanentCAError(f"CA connector {row.name!r} has unsupported type {row.type!r}")

    def _secrets(self, row: CAConnector) -> dict[str, str]:
        """The connector's sealed secret options, opened."""
        if not row.secrets:
            return {}
        if self._box is None:
            raise PermanentCAError(f"CA connector {row.name!r}: no secret key to open its secrets")
        try:
            opened = json.loads(self._box.open(row.secrets))
        except ValueError:
            raise PermanentCAError(
                f"CA connector {row.name!r}: its secrets do not open with this secret key"
            ) from None
        return {str(k): str(v) for k, v in opened.items()}
