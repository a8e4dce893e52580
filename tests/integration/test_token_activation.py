"""``POST /token/disable`` and ``/token/enable``, answered as privacyIDEA 3.14 answers them."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import func, select

from shared.db.models import AuditEntry
from tests.integration.test_ca_approval import setup_owner, watch
from tests.integration.test_ca_revocation import enroll
from tests.support.pki import make_csr
from tests.support.stack import Stack

PASSWORD = "alice-password-1"


def value(answer: httpx.Response) -> Any:
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]["value"]


def error(answer: httpx.Response) -> tuple[int, int, str]:
    failed = answer.json()["result"]
    assert failed["status"] is False, answer.text
    return answer.status_code, failed["error"]["code"], failed["error"]["message"]


async def shown(client: httpx.AsyncClient, serial: str) -> dict[str, Any]:
    listed = value(await client.get("/token/", params={"serial": serial}))
    token: dict[str, Any] = listed["tokens"][0]
    return token


async def audited(stack: Stack, action: str, serial: str, at_least: int) -> int:
    """How many audit rows record *action* on *serial*, once *at_least* are written."""
    query = select(func.count()).select_from(AuditEntry)
    query = query.where(AuditEntry.action == action, AuditEntry.serial == serial)
    for _ in range(500):
        async with stack.db.read() as session:
            count = await session.scalar(query) or 0
        if count >= at_least:
            return count
        await asyncio.sleep(0.01)
    raise AssertionError(f"fewer than {at_least} audit rows of {action} for {serial}")


async def test_disable_and_enable_count_the_tokens_they_change(stack: Stack) -> None:
    await setup_owner(stack, await stack.admin_token())
    events = await watch(stack)
    async with stack.client(await stack.admin_token()) as client:
        serial = (await enroll(client, "alice"))["serial"]
        assert value(await client.post("/token/disable", json={"serial": serial})) == 1
        disabled = await shown(client, serial)
        assert (disabled["active"], disabled["rollout_state"]) == (False, "enrolled")
        assert "disabled" not in disabled["info"]
        # Already disabled: privacyIDEA answers 0, nothing is announced again.
        assert value(await client.post("/token/disable", data={"serial": serial})) == 0
        assert value(await client.post("/token/enable", data={"serial": serial})) == 1
        assert (await shown(client, serial))["active"] is True
        assert value(await client.post("/token/enable", json={"serial": serial})) == 0
        [off] = await events.wait(serial, "token_disable")
        [on] = await events.wait(serial, "token_enable")
        assert (off.data["rollout_state"], off.data["admin"]) == ("enrolled", "admin")
        assert on.data["username"] == "alice"
        assert len(events.of(serial, "token_disable")) == 1

        # privacyIDEA's rule for a user instead of a serial: the user's only token.
        assert value(await client.post("/token/disable", json={"user": "alice@corp"})) == 1
        assert value(await client.post("/token/enable", json={"user": "alice"})) == 1
        second = (await enroll(client, "alice"))["serial"]
        several = await client.post("/token/disable", json={"user": "alice", "realm": "corp"})
        assert error(several)[:2] == (400, 905) and "several tokens" in error(several)[2]

        # A revoked token is inactive for good: disabling it changes nothing, enabling fails.
        assert value(await client.post("/token/revoke", json={"serial": second})) == 1
        assert value(await client.post("/token/disable", json={"serial": second})) == 0
        locked = error(await client.post("/token/enable", json={"serial": second}))
        assert locked == (400, 1007, f"serial: token {second} is revoked; cannot enable it")
        assert (await shown(client, second))["active"] is False
    assert await audited(stack, "POST /token/disable", serial, 3) == 3
    assert events.consumer is not None
    await events.consumer.stop()


async def test_what_disable_and_enable_refuse(memory_stack: Stack) -> None:
    stack = memory_stack
    async with stack.client(await stack.admin_token()) as admin:
        made = await admin.post(
            "/user/", json={"user": "alice", "realm": "corp", "password": PASSWORD}
        )
        assert made.is_success, made.text
        assert (await admin.post("/user/", json={"user": "bob", "realm": "corp"})).is_success
        serial = (await enroll(admin, "alice"))["serial"]
        for route in ("/token/disable", "/token/enable"):
            missing = error(await admin.post(route, json={}))
            assert missing[:2] == (400, 905) and missing[2].startswith("serial: required")
            nosuch = error(await admin.post(route, json={"serial": "CRT00000000"}))
            assert nosuch[:2] == (404, 601) and nosuch[2].startswith("serial: ")
            nobody = error(await admin.post(route, json={"user": "mallory", "realm": "corp"}))
            assert nobody[:2] == (400, 904) and nobody[2].startswith("user: unknown user")
            none = error(await admin.post(route, json={"user": "bob", "realm": "corp"}))
            assert none[:2] == (400, 905) and "has no token" in none[2]
            bad = error(await admin.post(route, json={"serial": serial, "realm": "a b"}))
            assert bad[:2] == (400, 905) and bad[2].startswith("realm")

    # Users act on their own tokens only where a user policy grants it, as for revoke.
    async with stack.client(await stack.login("alice@corp", PASSWORD)) as alice:
        refused = error(await alice.post("/token/disable", json={"serial": serial}))
        assert refused[:2] == (403, 303) and refused[2].startswith("disable: no user policy")
        other = error(await alice.post("/token/disable", json={"user": "bob", "realm": "corp"}))
        assert other[:2] == (403, 303)
        async with stack.client(await stack.admin_token()) as admin:
            policy = {"scope": "user", "action": "disable, enable", "realm": "corp"}
            assert (await admin.post("/policy/own-tokens", json=policy)).is_success
        assert value(await alice.post("/token/disable", json={"serial": serial})) == 1
        assert value(await alice.post("/token/enable", json={"user": "alice"})) == 1


async def test_a_csr_wins_over_genkey_as_in_privacyidea(memory_stack: Stack) -> None:
    """``privacyideaadm certificate sign`` sends ``request`` and ``genkey=1``: the CSR is signed."""
    stack = memory_stack
    await setup_owner(stack, await stack.admin_token())
    async with stack.client(await stack.admin_token()) as client:
        body = {"request": make_csr("alice"), "ca": "localca", "user": "alice", "realm": "corp"}
        answer = await client.post(
            "/token/init", data={**body, "genkey": "1", "type": "certificate"}
        )
        assert value(answer) is True
        detail = answer.json()["detail"]
        assert (
            detail["rollout_state"] == "enrolled" and "BEGIN CERTIFICATE" in detail["certificate"]
        )
        assert "pkcs12_password" not in detail and "keytype" not in detail
        token = await shown(client, detail["serial"])
        assert (
            "genkey" not in token["info"]
            and token["info"]["request"].strip() == body["request"].strip()
        )
