"""The audit log over real HTTP: every call recorded once, filters, paging, no secrets."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select

from shared.db.models import AuditEntry
from tests.support.pki import make_csr
from tests.support.stack import ADMIN, Stack

USER_PASSWORD = "Alice-Secret-Pw-7c1f"
WRONG_PASSWORD = "Wrong-Guess-Pw-93ab"
SMTP_PASSWORD = "Smtp-Secret-Pw-51d0"
AUTH_KEY = "0123456789abcdef0123456789abcdef"
BAD_AUTH_KEY = "Not-Hex-Key-Secret-6e2a"
SHORT_PASSWORD = "Sh0rt!x"


async def audit_rows(stack: Stack, at_least: int) -> list[AuditEntry]:
    """The audit rows once at least *at_least* were written (they are written after replies)."""
    for _ in range(1000):
        async with stack.db.read() as session:
            count = await session.scalar(select(func.count()).select_from(AuditEntry)) or 0
            if count >= at_least:
                return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
        await asyncio.sleep(0.01)
    raise AssertionError(f"fewer than {at_least} audit rows were written")


async def _audit(stack: Stack, token: str, **params: Any) -> dict[str, Any]:
    async with stack.client(token) as client:
        answer = await client.get("/audit/", params=params)
    assert answer.status_code == 200, answer.text
    value: dict[str, Any] = answer.json()["result"]["value"]
    return value


async def test_successful_and_failed_calls_are_recorded(stack: Stack) -> None:
    token = await stack.admin_token()
    async with stack.client(token) as client:
        listed = await client.get(
            "/token/",
            params={"serial": "CRT00000001", "user": "alice", "realm": "corp"},
            headers={"X-Correlation-ID": "audit-test-1"},
        )
        assert listed.status_code == 200
        invalid = await client.post("/user/", json={"user": "bad name!", "realm": "corp"})
        assert invalid.status_code == 400
        missing = await client.get("/token/CRT99999999")
        assert missing.status_code in (404, 405)
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
    async with stack.client() as anonymous:
        assert (await anonymous.get("/token/")).status_code == 401
    rows = await audit_rows(stack, 5)
    assert len(rows) == 5
    login, listing, bad, _, unauth = rows
    assert (login.action, login.success, login.role, login.caller) == (
        "POST /auth",
        True,
        "admin",
        ADMIN,
    )
    assert listing.action == "GET /token/" and listing.success and listing.status == 200
    assert (listing.serial, listing.username, listing.realm) == ("CRT00000001", "alice", "corp")
    assert listing.correlation_id == "audit-test-1"
    assert listing.client == "127.0.0.1" and listing.time is not None
    assert bad.action == "POST /user/" and not bad.success and bad.status == 400
    assert bad.role == "admin" and "user" in bad.info
    assert unauth.action == "GET /token/" and not unauth.success and unauth.status == 401
    assert unauth.role == "" and unauth.caller == "" and "Authorization" in unauth.info
    assert not any("healthz" in r.action or "metrics" in r.action for r in rows)
    assert all(r.correlation_id for r in rows)


async def test_filters_and_paging(stack: Stack) -> None:
    token = await stack.admin_token()
    async with stack.client(token) as client:
        for serial in ("CRT00000001", "CRT00000002", "CRT00000003"):
            assert (await client.get("/token/", params={"serial": serial})).status_code == 200
        assert (await client.post("/user/", json={"user": "alice"})).status_code == 400
    async with stack.client() as anonymous:
        await anonymous.post("/auth", json={"username": ADMIN, "password": "wrong-password-1"})
    await audit_rows(stack, 6)

    first = await _audit(stack, token, action="GET /token/", pagesize=2)
    assert first["count"] == 3 and first["current"] == 1
    assert first["next"] == 2 and first["prev"] is None
    assert [e["serial"] for e in first["auditdata"]] == ["CRT00000003", "CRT00000002"]
    second = await _audit(stack, token, action="GET /token/", pagesize=2, page=2)
    assert [e["serial"] for e in second["auditdata"]] == ["CRT00000001"]
    assert second["next"] is None and second["prev"] == 1

    failed = await _audit(stack, token, success="false")
    assert {e["action"] for e in failed["auditdata"]} == {"POST /user/", "POST /auth"}
    assert (await _audit(stack, token, serial="CRT00000002"))["count"] == 1
    assert (await _audit(stack, token, action="POST *"))["count"] == 3
    assert (await _audit(stack, token, role="admin", caller=ADMIN, action="POST *"))["count"] == 2
    assert (await _audit(stack, token, caller="nobody"))["count"] == 0
    wrong_login = await _audit(stack, token, action="POST /auth", success="false")
    assert wrong_login["count"] == 1 and wrong_login["auditdata"][0]["user"] == ADMIN
    assert (await _audit(stack, token, since="2999-01-01T00:00:00"))["count"] == 0
    past = await _audit(stack, token, since="2000-01-01T00:00:00Z", until="2999-01-01T00:00:00Z")
    assert past["count"] >= 6
    async with stack.client(token) as client:
        backwards = await client.get(
            "/audit/", params={"since": "2999-01-01T00:00:00", "until": "2000-01-01T00:00:00"}
        )
        assert backwards.status_code == 400 and "since" in backwards.text
        unparsable = await client.get("/audit/", params={"success": "maybe"})
        assert unparsable.status_code == 400 and "success" in unparsable.text


async def test_users_cannot_read_the_audit(stack: Stack) -> None:
    token = await stack.admin_token()
    async with stack.client(token) as client:
        created = await client.post(
            "/user/", json={"user": "alice", "realm": "corp", "password": USER_PASSWORD}
        )
        assert created.status_code == 200, created.text
    async with stack.client() as client:
        login = await client.post(
            "/auth", json={"username": "alice@corp", "password": USER_PASSWORD}
        )
    user_token = login.json()["result"]["value"]["token"]
    async with stack.client(user_token) as client:
        refused = await client.get("/audit/")
    assert refused.status_code == 403
    for _ in range(300):  # audit rows are written a moment after their replies
        denied = await _audit(stack, token, action="GET /audit/", success="false")
        if denied["count"]:
            break
        await asyncio.sleep(0.01)
    assert denied["count"] == 1
    entry = denied["auditdata"][0]
    assert (entry["role"], entry["caller"], entry["status"]) == ("user", "alice", 403)


async def test_no_secret_enters_the_audit_log(stack: Stack) -> None:
    token = await stack.admin_token()
    async with stack.client(token) as client:
        created = await client.post(
            "/user/", json={"user": "alice", "realm": "corp", "password": USER_PASSWORD}
        )
        assert created.status_code == 200, created.text
        too_short = await client.post(
            "/user/", json={"user": "bob", "realm": "corp", "password": SHORT_PASSWORD}
        )
        assert too_short.status_code == 400 and "password" in too_short.text
        smtp = await client.post(
            "/smtpserver/mail",
            json={"server": "127.0.0.1", "password": SMTP_PASSWORD, "sender": "ca@example.org"},
        )
        assert smtp.status_code == 200, smtp.text
        connector = await client.post(
            "/caconnector/remote",
            json={"type": "cfssl", "url": "http://127.0.0.1:9", "auth_key": AUTH_KEY},
        )
        assert connector.status_code == 200, connector.text
        refused = await client.post(
            "/caconnector/other",
            json={"type": "cfssl", "url": "http://127.0.0.1:9", "auth_key": BAD_AUTH_KEY},
        )
        assert refused.status_code == 400
    async with stack.client() as client:
        for password in (WRONG_PASSWORD, USER_PASSWORD):
            await client.post("/auth", json={"username": "alice@corp", "password": password})
        await client.post("/auth", json={"username": ADMIN, "password": WRONG_PASSWORD})
    user_token = await stack.login("alice@corp", USER_PASSWORD)
    async with stack.client(user_token) as client:
        enrolled = await client.post(
            "/token/init",
            json={"type": "certificate", "request": make_csr("alice"), "ca": "localca"},
        )
        assert enrolled.status_code == 200, enrolled.text
    rows = await audit_rows(stack, 11)
    dump = repr([vars(r) for r in rows])
    for secret in (
        USER_PASSWORD,
        WRONG_PASSWORD,
        SMTP_PASSWORD,
        AUTH_KEY,
        BAD_AUTH_KEY,
        SHORT_PASSWORD,
    ):
        assert secret not in dump
    assert "PRIVATE KEY" not in dump and "CERTIFICATE" not in dump
    assert sum(1 for r in rows if r.action == "POST /auth" and not r.success) == 2
    [init_row] = [r for r in rows if r.action == "POST /token/init"]
    assert init_row.serial == enrolled.json()["detail"]["serial"]
    assert (init_row.role, init_row.caller) == ("user", "alice")
    assert (init_row.username, init_row.realm) == ("alice", "corp")


async def test_a_revocation_records_the_serial_from_its_body(stack: Stack) -> None:
    token = await stack.admin_token()
    async with stack.client(token) as client:
        missing = await client.post("/token/revoke", json={"serial": "CRT0000ABCD"})
        assert missing.status_code == 404, missing.text
    rows = await audit_rows(stack, 2)
    revoke = rows[-1]
    assert revoke.action == "POST /token/revoke" and not revoke.success
    assert revoke.serial == "CRT0000ABCD"
    assert (await _audit(stack, token, serial="CRT0000ABCD"))["count"] == 1
