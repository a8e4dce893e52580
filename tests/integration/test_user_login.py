"""User login over real HTTP: both syntaxes, admins first, lockout, own tokens only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from shared.db.models import AuditEntry, LoginFailure, utcnow
from tests.support.pki import make_csr
from tests.support.stack import ADMIN, ADMIN_PASSWORD, Stack, prepare, running_stack, settings_for

PASSWORD = "Alice-Login-Pw-4d2e"
BOB_PASSWORD = "Bob-Login-Pw-8a1c"


async def _user(stack: Stack, user: str, password: str | None, realm: str = "corp") -> None:
    body = {"user": user, "realm": realm, **({"password": password} if password else {})}
    async with stack.client(await stack.admin_token()) as client:
        answer = await client.post("/user/", json=body)
    assert answer.status_code == 200, answer.text


async def _auth(stack: Stack, **body: str) -> tuple[int, dict[str, object]]:
    async with stack.client() as client:
        answer = await client.post("/auth", json=body)
    return answer.status_code, answer.json()["result"]


async def _token(stack: Stack, **body: str) -> str:
    status, result = await _auth(stack, **body)
    assert status == 200, result
    value = result["value"]
    assert isinstance(value, dict)
    return str(value["token"])


async def test_user_logs_in_with_either_syntax(stack: Stack) -> None:
    await _user(stack, "alice", PASSWORD)
    for body in (
        {"username": "alice@corp", "password": PASSWORD},
        {"username": "alice", "realm": "corp", "password": PASSWORD},
    ):
        status, result = await _auth(stack, **body)
        assert status == 200, result
        value = result["value"]
        assert isinstance(value, dict)
        assert (value["role"], value["username"], value["realm"]) == ("user", "alice", "corp")
        async with stack.client(str(value["token"])) as client:
            assert (await client.get("/token/")).status_code == 200


async def test_wrong_unknown_and_passwordless_logins_fail(stack: Stack) -> None:
    await _user(stack, "alice", PASSWORD)
    await _user(stack, "nopass", None)
    for body in (
        {"username": "alice@corp", "password": "not-the-password"},
        {"username": "alice@other", "password": PASSWORD},
        {"username": "alice", "password": PASSWORD},
        {"username": "ghost@corp", "password": PASSWORD},
        {"username": "nopass@corp", "password": PASSWORD},
    ):
        status, result = await _auth(stack, **body)
        assert status == 401, (body, result)
        assert result["status"] is False
    status, result = await _auth(stack, username="alice@corp")
    assert status == 400 and "password" in str(result["error"])


async def test_admin_wins_only_without_realm(stack: Stack) -> None:
    await _user(stack, ADMIN, PASSWORD)
    status, result = await _auth(stack, username=ADMIN, password=ADMIN_PASSWORD)
    assert status == 200 and isinstance(result["value"], dict)
    assert result["value"]["role"] == "admin"
    status, _ = await _auth(stack, username=ADMIN, password=PASSWORD)
    assert status == 401
    for body in (
        {"username": ADMIN, "realm": "corp", "password": PASSWORD},
        {"username": f"{ADMIN}@corp", "password": PASSWORD},
    ):
        status, result = await _auth(stack, **body)
        assert status == 200 and isinstance(result["value"], dict)
        assert (result["value"]["role"], result["value"]["realm"]) == ("user", "corp")
    status, _ = await _auth(stack, username=ADMIN, realm="corp", password=ADMIN_PASSWORD)
    assert status == 401


async def test_users_see_and_enroll_only_their_own_tokens(stack: Stack) -> None:
    await _user(stack, "alice", PASSWORD)
    await _user(stack, "bob", BOB_PASSWORD)
    admin = await stack.admin_token()
    async with stack.client(admin) as client:
        for user in ("alice", "bob", "bob"):
            answer = await client.post(
                "/token/init",
                json={"request": make_csr(user), "ca": "localca", "user": user, "realm": "corp"},
            )
            assert answer.status_code == 200, answer.text
    alice = await _token(stack, username="alice@corp", password=PASSWORD)
    async with stack.client(alice) as client:
        mine = (await client.get("/token/")).json()["result"]["value"]
        assert mine["count"] == 1 and mine["tokens"][0]["username"] == "alice"
        asked = await client.get("/token/", params={"user": "bob"})
        assert asked.status_code == 403, asked.text
        assert "their own tokens" in asked.json()["result"]["error"]["message"]
        for owner in ({"user": "bob", "realm": "corp"}, {"user": "bob@corp"}):
            refused = await client.post(
                "/token/init", json={"request": make_csr("bob"), "ca": "localca", **owner}
            )
            assert refused.status_code == 403, refused.text
            assert "themselves" in refused.json()["result"]["error"]["message"]
        own = await client.post("/token/init", json={"request": make_csr("alice"), "ca": "localca"})
        assert own.status_code == 200 and own.json()["detail"]["rollout_state"] == "enrolled"
        assert (await client.get("/user/")).status_code == 403
    async with stack.client(admin) as client:
        bobs = (await client.get("/token/", params={"user": "bob"})).json()["result"]["value"]
    assert bobs["count"] == 2


@pytest.fixture
async def locking(tmp_path: Path) -> AsyncIterator[Stack]:
    """A system locking a login for a minute after three wrong passwords."""
    settings = settings_for(tmp_path / "data", login_max_failures=3, login_lockout_seconds=60)
    await prepare(settings)
    async with running_stack(settings) as running:
        yield running


async def _lock_alice(stack: Stack) -> None:
    for _ in range(3):
        status, _ = await _auth(stack, username="alice@corp", password="a-wrong-guess")
        assert status == 401


async def test_lockout_refuses_even_the_right_password_and_survives_a_restart(
    locking: Stack,
) -> None:
    stack = locking
    await _user(stack, "alice", PASSWORD)
    await _user(stack, "bob", BOB_PASSWORD)
    await _lock_alice(stack)
    status, result = await _auth(stack, username="alice@corp", password=PASSWORD)
    assert status == 401 and result["error"] == {
        "code": 4031,
        "message": "username or password is wrong",
    }
    await _token(stack, username="bob@corp", password=BOB_PASSWORD)

    async with running_stack(stack.settings) as restarted:
        status, _ = await _auth(restarted, username="alice", realm="corp", password=PASSWORD)
        assert status == 401
        # The window ends: the next right password passes and clears the count.
        async with restarted.db.write() as session:
            await session.execute(
                update(LoginFailure).values(locked_until=utcnow() - timedelta(seconds=1))
            )
        await _token(restarted, username="alice@corp", password=PASSWORD)
        async with restarted.db.read() as session:
            assert (await session.scalars(select(LoginFailure))).all() == []
        locked = []
        for _ in range(1000):
            async with restarted.db.read() as session:
                locked = list(
                    await session.scalars(
                        select(AuditEntry).where(
                            AuditEntry.action == "POST /auth", AuditEntry.info.like("%locked%")
                        )
                    )
                )
            if len(locked) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(locked) == 2
        assert all((e.username, e.realm, e.success) == ("alice", "corp", False) for e in locked)


async def test_lockout_ends_with_its_window(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "data", login_max_failures=3, login_lockout_seconds=0.5)
    await prepare(settings)
    async with running_stack(settings) as stack:
        await _user(stack, "alice", PASSWORD)
        await _lock_alice(stack)
        async with stack.db.read() as session:
            row = await session.get(LoginFailure, ("corp", "alice"))
        assert row is not None and row.locked_until is not None
        until = row.locked_until
        await asyncio.sleep((until - utcnow()).total_seconds() + 0.05)
        await _token(stack, username="alice@corp", password=PASSWORD)
        # A success starts the count afresh: two more wrong passwords do not lock.
        for _ in range(2):
            await _auth(stack, username="alice@corp", password="a-wrong-guess")
        await _token(stack, username="alice@corp", password=PASSWORD)
