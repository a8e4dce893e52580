"""GET /token/ for the web UI: who holds a pending token, and looking without downloading."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select, update

from shared.db.models import CARequest, TokenKey
from tests.support.pki import make_csr
from tests.support.stack import Stack


async def _listed(client: httpx.AsyncClient, serial: str, **params: str) -> dict[str, Any]:
    answer = await client.get("/token/", params={"serial": serial, **params})
    assert answer.status_code == 200, answer.text
    [token] = answer.json()["result"]["value"]["tokens"]
    return dict(token)


async def _init(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    base = {"type": "certificate", "ca": "localca", "user": "alice", "realm": "corp"}
    answer = await client.post("/token/init", json={**base, **body})
    assert answer.status_code == 200, answer.text
    detail: dict[str, Any] = answer.json()["detail"]
    return detail


async def test_pending_tokens_say_who_holds_them(memory_stack: Stack) -> None:
    stack = memory_stack
    async with stack.client(await stack.admin_token()) as client:
        assert (await client.post("/user/", json={"user": "alice", "realm": "corp"})).is_success
        made = await client.post(
            "/caconnector/localca/templates/held", json={"approval": "required"}
        )
        assert made.status_code == 200, made.text
        held = await _init(client, request=make_csr("alice"), template="held")
        assert held["rollout_state"] == "pending"
        assert (await _listed(client, held["serial"]))["info"]["held_by"] == "certtoken"
        # In a list of several too.
        plain = await _init(client, request=make_csr("alice"))
        answer = await client.get("/token/", params={"user": "alice", "realm": "corp"})
        listed = {t["serial"]: t for t in answer.json()["result"]["value"]["tokens"]}
        assert listed[held["serial"]]["info"]["held_by"] == "certtoken"
        assert "held_by" not in listed[plain["serial"]]["info"]
        approved = await client.post(f"/ca/localca/requests/{held['request_id']}/approve")
        assert approved.status_code == 200, approved.text
        after = await _listed(client, held["serial"])
        assert after["certtoken_state"] == "enrolled" and "held_by" not in after["info"]


async def test_a_request_the_ca_holds_is_held_by_the_ca(memory_stack: Stack) -> None:
    stack = memory_stack
    async with stack.client(await stack.admin_token()) as client:
        assert (await client.post("/user/", json={"user": "alice", "realm": "corp"})).is_success
        made = await client.post(
            "/caconnector/localca/templates/held", json={"approval": "required"}
        )
        assert made.status_code == 200, made.text
        held = await _init(client, request=make_csr("alice"), template="held")
        serial, request_id = held["serial"], held["request_id"]
        # Approved and not yet at the CA: the CA decides next.
        async with stack.db.write() as session:
            await session.execute(
                update(CARequest).where(CARequest.id == request_id).values(decision="approve")
            )
        assert (await _listed(client, serial))["info"]["held_by"] == "ca"
        # Handed over to the CA (what the ca_worker does when the CA answers "pending").
        async with stack.db.write() as session:
            await session.execute(
                update(CARequest)
                .where(CARequest.id == request_id)
                .values(decision=None, kind="ca", remote_id="remote-1")
            )
        assert (await _listed(client, serial))["info"]["held_by"] == "ca"


async def test_a_token_by_serial_without_its_pkcs12_counts_no_download(
    memory_stack: Stack,
) -> None:
    stack = memory_stack

    async def downloads(serial: str) -> int:
        async with stack.db.read() as session:
            count = await session.scalar(
                select(TokenKey.downloads).where(TokenKey.serial == serial)
            )
        return int(count or 0)

    async with stack.client(await stack.admin_token()) as client:
        assert (await client.post("/user/", json={"user": "alice", "realm": "corp"})).is_success
        made = await _init(client, genkey=1)
        assert made["rollout_state"] == "enrolled" and made["pkcs12"]
        serial = made["serial"]
        before = await downloads(serial)
        looked = await _listed(client, serial, pkcs12="false")
        assert "pkcs12" not in looked["info"] and looked["info"]["certificate"]
        assert await downloads(serial) == before
        # privacyIDEA's way stays the default: the list by serial is a download.
        assert (await _listed(client, serial))["info"]["pkcs12"]
        assert await downloads(serial) == before + 1
