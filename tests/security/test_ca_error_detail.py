"""Issue 9: a remote CA's error text reaches administrators and the audit log, never users."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select

from shared.db.models import AuditEntry
from tests.integration.test_ca_approval import watch
from tests.support.pki import make_csr
from tests.support.stack import Stack

PASSWORD = "Alice-Detail-Pw-3f9b"
# What an internal service might say: nothing an enrolling user should read.
LEAK = "db01.internal.corp:5432 password authentication failed for user ca_signer"


@pytest.fixture
async def chatty_ca() -> AsyncIterator[str]:
    """A cfssl-speaking "CA" on 127.0.0.1 that refuses every request with internal details."""

    async def refuse(_request: web.Request) -> web.Response:
        body = {"success": False, "result": None, "errors": [{"code": 400, "message": LEAK}]}
        return web.json_response(body, status=400)

    app = web.Application()
    app.router.add_post("/api/v1/cfssl/{endpoint}", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def _audit_info(stack: Stack, serial: str) -> str:
    for _ in range(200):
        async with stack.db.read() as session:
            info = await session.scalar(
                select(AuditEntry.info).where(
                    AuditEntry.action == "POST /token/init", AuditEntry.serial == serial
                )
            )
        if info is not None:
            return info
        await asyncio.sleep(0.05)
    raise AssertionError(f"no audit row for the enrollment of {serial}")


async def test_users_get_a_generic_reason_admins_and_the_audit_log_the_cas_words(
    stack: Stack, chatty_ca: str
) -> None:
    admin = await stack.admin_token()
    events = await watch(stack)
    async with stack.client(admin) as client:
        body = {"user": "alice", "realm": "corp", "password": PASSWORD}
        assert (await client.post("/user/", json=body)).status_code == 200
        connector = {"type": "cfssl", "url": chatty_ca}
        assert (await client.post("/caconnector/chatty", json=connector)).status_code == 200
    user = await stack.login("alice@corp", PASSWORD)

    async with stack.client(user) as client:
        init = await client.post("/token/init", json={"request": make_csr("a"), "ca": "chatty"})
        mine = await client.get("/token/")
    detail: dict[str, Any] = init.json()["detail"]
    assert detail["rollout_state"] == "failed", init.text
    assert "CA connector 'chatty': the CA refused the request (HTTP 400)" in detail["reason"]
    assert "ca_detail" not in detail
    assert mine.status_code == 200
    assert [t["info"]["reason"] for t in mine.json()["result"]["value"]["tokens"]] == [
        detail["reason"]
    ]
    for answer in (init, mine):
        assert "db01" not in answer.text and "ca_signer" not in answer.text

    async with stack.client(admin) as client:
        own = await client.post(
            "/token/init",
            json={"request": make_csr("b"), "ca": "chatty", "user": "alice", "realm": "corp"},
        )
        listed = await client.get("/token/", params={"serial": detail["serial"]})
    assert own.json()["detail"]["ca_detail"] == LEAK
    assert own.json()["detail"]["reason"] == detail["reason"]
    assert listed.json()["result"]["value"]["tokens"][0]["info"]["ca_detail"] == LEAK

    # The user's call and the admin's are both audited with the CA's words.
    assert LEAK in await _audit_info(stack, detail["serial"])
    assert LEAK in await _audit_info(stack, own.json()["detail"]["serial"])
    # Events (and so the owner's mail) carry certtoken's reason only.
    seen = await events.wait(detail["serial"], "token_init")
    assert seen[0].data["reason"] == detail["reason"]
    assert all("db01" not in repr(e.data) for e in events.seen)
