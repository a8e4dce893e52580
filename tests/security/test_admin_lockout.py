"""Issue 9: administrators' logins lock after repeated wrong passwords, as users' do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from services.api.login import ADMIN_REALM
from shared.db.models import Admin, AuditEntry, LoginFailure, utcnow
from shared.security import hash_password
from tests.support.stack import ADMIN, ADMIN_PASSWORD, Stack, prepare, running_stack, settings_for

SECOND, SECOND_PASSWORD = "second-admin", "Second-Admin-Pw-5e2a"
USER_PASSWORD = "User-Named-Admin-Pw-9d0c"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """Three wrong passwords lock a login for a minute."""
    settings = settings_for(tmp_path / "data", login_max_failures=3, login_lockout_seconds=60)
    await prepare(settings)
    async with running_stack(settings) as running:
        async with running.db.write() as session:
            session.add(Admin(name=SECOND, password_hash=hash_password(SECOND_PASSWORD)))
        yield running


async def _auth(stack: Stack, username: str, password: str, realm: str = "") -> tuple[int, str]:
    body = {"username": username, "password": password, **({"realm": realm} if realm else {})}
    async with stack.client() as client:
        answer = await client.post("/auth", json=body)
    return answer.status_code, answer.text


async def test_an_admin_is_locked_after_wrong_passwords_and_nobody_else_is(stack: Stack) -> None:
    # A user who happens to be called "admin" has a count of their own.
    async with stack.client(await stack.admin_token()) as client:
        body = {"user": ADMIN, "realm": "corp", "password": USER_PASSWORD}
        assert (await client.post("/user/", json=body)).status_code == 200

    wrong = [await _auth(stack, ADMIN, f"guess-{i}") for i in range(3)]
    assert {status for status, _ in wrong} == {401}
    locked_status, locked_text = await _auth(stack, ADMIN, ADMIN_PASSWORD)
    assert locked_status == 401
    # The same answer as a wrong password: the lock tells nothing.
    assert "username or password is wrong" in locked_text and "lock" not in locked_text

    assert (await _auth(stack, SECOND, SECOND_PASSWORD))[0] == 200
    assert (await _auth(stack, f"{ADMIN}@corp", USER_PASSWORD))[0] == 200
    async with stack.db.read() as session:
        rows = {(r.realm, r.username) for r in await session.scalars(select(LoginFailure))}
    assert (ADMIN_REALM, ADMIN) in rows
    assert ("corp", ADMIN) not in rows

    # When the window is over the right password works again, and a success clears the count.
    async with stack.db.write() as session:
        await session.execute(
            update(LoginFailure).values(locked_until=utcnow() - timedelta(seconds=1))
        )
    assert (await _auth(stack, ADMIN, ADMIN_PASSWORD))[0] == 200
    async with stack.db.read() as session:
        assert await session.get(LoginFailure, (ADMIN_REALM, ADMIN)) is None

    for _ in range(100):
        async with stack.db.read() as session:
            noted = list(
                await session.scalars(
                    select(AuditEntry).where(
                        AuditEntry.action == "POST /auth", AuditEntry.info.like("%locked%")
                    )
                )
            )
        if noted:
            break
        await asyncio.sleep(0.05)
    assert [(e.username, e.success) for e in noted] == [(ADMIN, False)]


async def test_users_locking_themselves_never_lock_an_admin(stack: Stack) -> None:
    async with stack.client(await stack.admin_token()) as client:
        body = {"user": SECOND, "realm": "corp", "password": USER_PASSWORD}
        assert (await client.post("/user/", json=body)).status_code == 200
    for i in range(4):
        assert (await _auth(stack, f"{SECOND}@corp", f"guess-{i}"))[0] == 401
    assert (await _auth(stack, f"{SECOND}@corp", USER_PASSWORD))[0] == 401
    assert (await _auth(stack, SECOND, SECOND_PASSWORD))[0] == 200
