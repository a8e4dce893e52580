"""Requests a CA keeps pending on its side: polled with growing delays until it decides.

No CA at hand holds requests for approval (cfssl issues at once), so this CA is scripted: it
answers pending, then pending again, then issues with the local CA's key (or refuses).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from services.ca_worker.connectors.base import (
    Connector,
    Denied,
    Pending,
    SignResult,
    Template,
)
from services.ca_worker.connectors.local import LocalConnector
from services.ca_worker.lifecycle import Lifecycle
from services.ca_worker.registry import _FACTORIES, register_connector_type
from services.ca_worker.tokenkeys import TokenKeys
from shared.db.models import CAConnector
from shared.identity import Owner
from shared.messaging.memory import MemoryBroker
from shared.messaging.topology import CA_WORKER_QUEUE
from shared.security import SecretBox
from tests.integration.test_ca_approval import watch
from tests.support.jobs import tapped
from tests.support.pki import make_csr
from tests.support.stack import Stack


class ScriptedCA(Connector):
    """Holds every request; its status answers follow a script per request."""

    type: ClassVar[str] = "scripted"
    polls: ClassVar[bool] = True
    calls: ClassVar[dict[str, int]] = {}
    refuse: ClassVar[set[str]] = set()
    # Requests it issues for someone else than the owner it was asked for.
    impostor: ClassVar[set[str]] = set()

    def __init__(self, name: str, local: LocalConnector) -> None:
        self.name = name
        self._local = local
        self._csrs: dict[str, tuple[str, Owner]] = {}

    async def sign(self, csr_pem: str, template: Template, owner: Owner) -> SignResult:
        request_id = f"MS-{len(self._csrs) + 1}"
        self._csrs[request_id] = (csr_pem, owner)
        return Pending(request_id)

    async def status(self, request_id: str) -> SignResult:
        self.calls[request_id] = self.calls.get(request_id, 0) + 1
        if self.calls[request_id] < 3:
            return Pending(request_id)
        if request_id in self.refuse:
            return Denied("rejected by the CA manager")
        csr_pem, owner = self._csrs[request_id]
        if request_id in self.impostor:
            owner = Owner("admin", "corp")
        return await self._local.sign(csr_pem, Template(), owner)

    async def revoke(self, serial_number: str, reason: str) -> None:
        return None

    def ca_certificate(self) -> str:
        return self._local.ca_certificate()


@pytest.fixture
def scripted(stack: Stack) -> Iterator[None]:
    yield from _scripted(stack)


@pytest.fixture
def scripted_idle(idle_worker: Stack) -> Iterator[None]:
    yield from _scripted(idle_worker)


def _scripted(stack: Stack) -> Iterator[None]:
    settings = stack.settings

    def factory(row: CAConnector, _secrets: dict[str, str]) -> Connector:
        local = LocalConnector.load(
            "localca",
            {"cakey": "ca/localca/cakey.pem", "cacert": "ca/localca/cacert.pem"},
            settings.data_dir,
            settings.resolved_ca_passphrase,
        )
        return ScriptedCA(row.name, local)

    ScriptedCA.calls.clear()
    ScriptedCA.refuse.clear()
    ScriptedCA.impostor.clear()
    register_connector_type("scripted", factory)
    try:
        yield
    finally:
        _FACTORIES.pop("scripted", None)


async def wait_state(client: Any, serial: str, state: str) -> dict[str, Any]:
    for _ in range(400):
        answer = (await client.get("/token/", params={"serial": serial})).json()
        token: dict[str, Any] = answer["result"]["value"]["tokens"][0]
        if token["rollout_state"] == state:
            return token
        await asyncio.sleep(0.05)
    raise AssertionError(f"{serial} never became {state}: {token}")


@pytest.mark.usefixtures("scripted")
async def test_pending_at_the_ca_is_polled_until_it_decides(stack: Stack) -> None:
    async with stack.db.write() as session:
        session.add(CAConnector(name="msca", type="scripted", options={}, cacert=""))
    token = await stack.admin_token()
    events = await watch(stack)
    async with stack.client(token) as client:
        assert (await client.post("/user/", json={"user": "alice", "realm": "corp"})).is_success
        answers = []
        for cn in ("issued", "refused"):
            answer = await client.post(
                "/token/init",
                json={"request": make_csr(cn), "ca": "msca", "user": "alice", "realm": "corp"},
            )
            answers.append(answer.json()["detail"])
        issued, refused = answers
        assert issued["rollout_state"] == "pending" and issued["request_id"]
        ScriptedCA.refuse.add("MS-2")
        held = (await client.get("/ca/msca/requests", params={"status": "pending"})).json()
        assert {r["held_by"] for r in held["result"]["value"]["requests"]} == {"ca"}
        # The CA itself decides: certtoken's managers cannot.
        mine = await client.post(f"/ca/msca/requests/{issued['request_id']}/approve")
        assert mine.status_code == 409

        enrolled = await wait_state(client, issued["serial"], "enrolled")
        assert "BEGIN CERTIFICATE" in enrolled["info"]["certificate"]
        denied = await wait_state(client, refused["serial"], "denied")
        assert denied["info"]["reason"] == "rejected by the CA manager"
    # Asked three times each: pending, pending, decided; then never again.
    await asyncio.sleep(0.5)
    assert ScriptedCA.calls == {"MS-1": 3, "MS-2": 3}
    updates = await events.wait(issued["serial"], "token_update")
    assert len(updates) == 1 and updates[0].data["previous_rollout_state"] == "pending"
    assert "admin" not in updates[0].data


@pytest.mark.usefixtures("scripted")
async def test_a_certificate_the_ca_issues_beyond_the_decision_is_not_handed_out(
    stack: Stack,
) -> None:
    async with stack.db.write() as session:
        session.add(CAConnector(name="msca", type="scripted", options={}, cacert=""))
    ScriptedCA.impostor.add("MS-1")
    async with stack.client(await stack.admin_token()) as client:
        assert (await client.post("/user/", json={"user": "alice", "realm": "corp"})).is_success
        answer = await client.post(
            "/token/init",
            json={"request": make_csr(), "ca": "msca", "user": "alice", "realm": "corp"},
        )
        held = answer.json()["detail"]
        assert held["rollout_state"] == "pending"
        denied = await wait_state(client, held["serial"], "denied")
    assert "subject 'CN=admin'" in denied["info"]["reason"]
    assert "not what certtoken decided" in denied["info"]["reason"]
    assert "certificate" not in denied["info"]


@pytest.mark.usefixtures("scripted_idle")
async def test_an_approval_whose_first_poll_cannot_be_published_is_still_polled(
    idle_worker: Stack,
) -> None:
    stack, worker = idle_worker, idle_worker.worker
    async with stack.db.write() as session:
        session.add(CAConnector(name="msca", type="scripted", options={}, cacert=""))
    async with (
        stack.client(await stack.admin_token()) as admin,
        tapped(stack.broker, CA_WORKER_QUEUE) as jobs,
    ):
        assert (await admin.post("/user/", json={"user": "alice", "realm": "corp"})).is_success
        made = await admin.post("/caconnector/msca/templates/held", json={"approval": "required"})
        assert made.status_code == 200, made.text
        answer = await admin.post(
            "/token/init",
            json={"request": make_csr(), "ca": "msca", "template": "held", "user": "alice@corp"},
        )
        serial = answer.json()["detail"]["serial"]
        await worker.router(await jobs.next("csr.sign"))
        held = await wait_state(admin, serial, "pending")
        approved = await admin.post(f"/ca/msca/requests/{held['info']['request_id']}/approve")
        assert approved.status_code == 200, approved.text
        approve = await jobs.next("ca.approve")

        # The CA takes the request and answers pending; the broker is gone at that moment.
        gone = MemoryBroker()
        await gone.close()
        cut_off = Lifecycle(
            stack.db,
            worker.registry,
            worker.relay,
            gone,
            stack.settings.retry_delays_ms,
            worker.publisher.refresh,
            worker.relay.lease,
            TokenKeys(stack.db, SecretBox(stack.settings.resolved_secret_key), worker.keys),
        )
        with contextlib.suppress(RuntimeError):
            await cut_off.approve(approve)
        await worker.router(approve)  # the redelivery
        # Every job that follows goes to the ca_worker, until the CA has decided.
        for _ in range(3):
            await worker.router(await jobs.next("ca.poll"))
        enrolled = await wait_state(admin, serial, "enrolled")
    assert "BEGIN CERTIFICATE" in enrolled["info"]["certificate"]
    assert ScriptedCA.calls == {"MS-1": 3}
