"""RabbitMQ goes away and comes back: nothing is lost, nothing doubled, nothing hangs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from sqlalchemy import select

from services.api.app import create_app
from services.ca_worker.service import CAWorker
from services.runtime import broker_for, http_server
from shared.db.models import IssuedCertificate
from shared.db.session import Database
from tests.support.pki import make_csr
from tests.support.proxy import TcpProxy
from tests.support.stack import ADMIN, ADMIN_PASSWORD, prepare, settings_for

pytestmark = pytest.mark.rabbitmq

# A guard against hanging, not a speed claim: stopping must not wait for RabbitMQ.
STOP_GUARD_SECONDS = 30


@dataclass
class System:
    """api and ca_worker whose every RabbitMQ connection runs through *proxy*."""

    proxy: TcpProxy
    client: httpx.AsyncClient
    worker: CAWorker
    db: Database
    stopped: bool = False


@asynccontextmanager
async def system(tmp_path: Path, amqp_url: str) -> AsyncIterator[System]:
    """Start the services behind a cuttable proxy; stop them even while it is cut."""
    target = urlsplit(amqp_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
    await proxy.start()
    through = urlunsplit(
        (
            target.scheme,
            f"{target.username}:{target.password}@127.0.0.1:{proxy.port}",
            target.path,
            "reconnect_interval=0.5",
            "",
        )
    )
    settings = settings_for(tmp_path / "data", amqp_url=through, init_wait_seconds=1)
    await prepare(settings)
    db = Database(settings.resolved_database_url)
    worker_broker, api_broker = broker_for(settings), broker_for(settings)
    await worker_broker.start()
    worker = CAWorker(settings, worker_broker, db)
    await worker.start()
    server = http_server(create_app(settings, api_broker, db=db), "127.0.0.1", 0)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            auth = await client.post("/auth", json={"username": ADMIN, "password": ADMIN_PASSWORD})
            client.headers["Authorization"] = auth.json()["result"]["value"]["token"]
            await client.post("/user/", json={"user": "alice", "realm": "corp"})
            sut = System(proxy, client, worker, db)
            yield sut
    finally:
        server.should_exit = True

        async def stop_all() -> None:
            await task
            await worker.stop()
            await worker_broker.close()
            await api_broker.close()

        await asyncio.wait_for(stop_all(), STOP_GUARD_SECONDS)
        await db.dispose()
        await proxy.cut()
    sut.stopped = True


async def _enroll(client: httpx.AsyncClient, i: int) -> dict[str, str]:
    answer = await client.post(
        "/token/init",
        json={"request": make_csr(f"u{i}"), "ca": "localca", "user": "alice", "realm": "corp"},
    )
    assert answer.status_code == 200, answer.text
    detail: dict[str, str] = answer.json()["detail"]
    return detail


async def test_requests_during_an_outage_are_enrolled_once_it_ends(
    tmp_path: Path, amqp_url: str
) -> None:
    async with system(tmp_path, amqp_url) as sut:
        await sut.proxy.cut()
        details = [await _enroll(sut.client, i) for i in range(5)]
        assert {d["rollout_state"] for d in details} == {"submitted"}
        ready = await sut.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"database": True, "broker": False}

        await sut.proxy.start()
        serials = {d["serial"] for d in details}
        states: dict[str, str] = {}
        for _ in range(300):
            listed = await sut.client.get("/token/", params={"user": "alice"})
            tokens = listed.json()["result"]["value"]["tokens"]
            states = {t["serial"]: t["rollout_state"] for t in tokens}
            if all(states.get(s) == "enrolled" for s in serials):
                break
            await asyncio.sleep(0.1)
        assert all(states.get(s) == "enrolled" for s in serials), states
        for _ in range(100):  # the api's own connection comes back on its next attempt
            if (await sut.client.get("/readyz")).status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert (await sut.client.get("/readyz")).status_code == 200
        async with sut.db.read() as session:
            issued = (await session.scalars(select(IssuedCertificate.token_serial))).all()
        assert sorted(issued) == sorted(serials)  # one certificate each, none twice


async def test_services_stop_while_rabbitmq_is_away(tmp_path: Path, amqp_url: str) -> None:
    async with system(tmp_path, amqp_url) as sut:
        assert (await _enroll(sut.client, 0))["rollout_state"] == "enrolled"
        await sut.proxy.cut()
        await asyncio.sleep(0.5)
    # Leaving the context stopped the api and the worker (under the guard) while cut.
    assert sut.stopped
