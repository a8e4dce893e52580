"""The whole system in the test's event loop, served over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import atexit
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from services.api.app import create_app
from services.api.signing import signer_for
from services.ca_worker.ca_create import create_local_ca
from services.ca_worker.service import CAWorker
from services.notifier.service import Notifier
from services.runtime import HttpServer, broker_for, http_server
from shared.config import Settings
from shared.db.migrate import upgrade
from shared.db.models import Admin
from shared.db.session import Database
from shared.messaging.base import Broker
from shared.security import hash_password
from tests.support.http import tls_context

ADMIN, ADMIN_PASSWORD = "admin", "admin-password-1"
# scrypt's N for the test administrator's hash: every login verifies it, and the product's
# cost (tested in tests/unit/test_security.py) makes that tens of milliseconds each.
ADMIN_HASH_COST = 2**10


@dataclass
class Stack:
    """A running system and what tests need to talk to it."""

    url: str
    settings: Settings
    db: Database
    broker: Broker
    worker: CAWorker

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        """An HTTP client for the api, authenticated when *token* is given."""
        headers = {"Authorization": token} if token else {}
        return httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=30, verify=tls_context()
        )

    async def admin_token(self) -> str:
        """Log in as the test administrator."""
        return await self.login(ADMIN, ADMIN_PASSWORD)

    async def login(self, username: str, password: str) -> str:
        """Log in (``user@realm`` for users) and return the access token."""
        async with self.client() as client:
            answer = await client.post("/auth", json={"username": username, "password": password})
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["result"]["value"]["token"]
        return token


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test: fast retries and polls, human-readable logs."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "log_json": False,
        "retry_delays_ms": [100, 300],
        "max_attempts": 4,
        "outbox_poll_seconds": 0.2,
        "init_wait_seconds": 5,
    }
    values.update(overrides)
    return Settings(**values)


async def prepare(settings: Settings, ca: str = "localca") -> None:
    """Migrate, create a local CA and an administrator, as an operator would."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if _copyable(settings):
        # What an operator's commands make is the same each time: make it once, copy it.
        if ca not in _prepared:
            template = Path(tempfile.mkdtemp(prefix="certtoken-prepared-")) / "data"
            atexit.register(shutil.rmtree, template.parent, ignore_errors=True)
            await _prepare(settings_for(template), ca)
            _prepared[ca] = template
        shutil.copytree(_prepared[ca], settings.data_dir, dirs_exist_ok=True)
        return
    await _prepare(settings, ca)


# Prepared data directories by CA name, for settings that _copyable admits.
_prepared: dict[str, Path] = {}


def _copyable(settings: Settings) -> bool:
    """Whether a prepared data directory fits *settings*: SQLite in it, its own secrets."""
    own_secrets = (
        settings.secret_key,
        settings.secret_key_file,
        settings.ca_passphrase,
        settings.ca_passphrase_file,
    )
    return (
        not settings.database_url and not any(own_secrets) and not any(settings.data_dir.iterdir())
    )


async def _prepare(settings: Settings, ca: str) -> None:
    """What prepare does the first time: migrate, create the CA and the administrator."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    await upgrade(settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    try:
        await create_local_ca(settings, db, ca)
        async with db.write() as session:
            session.add(
                Admin(name=ADMIN, password_hash=hash_password(ADMIN_PASSWORD, cost=ADMIN_HASH_COST))
            )
    finally:
        await db.dispose()
    # The api would make it on start; made here, the copies of a prepared dir share it.
    signer_for(settings)


class _QuickStop(HttpServer):
    """The api's server, stopping without uvicorn's fixed pauses (a 0.1 s tick to notice, 0.1 s
    for connections to go): a test stack stops hundreds of times a run, idle 0.2 s each."""

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            # on_tick refreshes the Date header every tenth tick, as uvicorn's 0.1 s ones do.
            counter = (counter + 1) % 10
            await asyncio.sleep(0.01)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn's shutdown, minus its sleeps: no new connections, the open ones finish
        # their requests and close, then the app's shutdown.
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        # uvicorn sets no event for either.
        while self.server_state.connections or self.server_state.tasks:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        for server in self.servers:
            await server.wait_closed()
        await self.lifespan.shutdown()


@asynccontextmanager
async def another_api(settings: Settings, broker: Broker) -> AsyncIterator[str]:
    """A second api process, as it were: the same database, its own engine and counts."""
    db = Database(settings.resolved_database_url)
    try:
        async with serving(create_app(settings, broker, manage_broker=False, db=db)) as url:
            yield url
    finally:
        await db.dispose()


@asynccontextmanager
async def serving(app: Any, trusted_proxies: Sequence[str] = ()) -> AsyncIterator[str]:
    """*app* served over real HTTP on 127.0.0.1 and an ephemeral port; yields its base URL."""
    server = _QuickStop(http_server(app, "127.0.0.1", 0, trusted_proxies).config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def running_stack(settings: Settings, *, worker: bool = True) -> AsyncIterator[Stack]:
    """api, ca_worker and notifier in this event loop; the api on an ephemeral port."""
    db = Database(settings.resolved_database_url)
    broker = broker_for(settings)
    await broker.start()
    ca_worker = CAWorker(settings, broker, db)
    notifier = Notifier(settings, broker, db)
    if worker:
        await ca_worker.start()
    await notifier.start()
    app = create_app(settings, broker, manage_broker=False, db=db)
    try:
        async with serving(app, settings.trusted_proxies) as url:
            yield Stack(url, settings, db, broker, ca_worker)
    finally:
        await notifier.stop()
        await ca_worker.stop()
        await broker.close()
        await db.dispose()
