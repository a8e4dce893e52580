"""Issue 9: per-client rate limits on /auth and POST /token/init, shared by api processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from shared.db.models import RateLimit
from tests.support.pki import make_csr
from tests.support.stack import (
    ADMIN,
    ADMIN_PASSWORD,
    Stack,
    another_api,
    prepare,
    running_stack,
    settings_for,
)

PASSWORD = "Alice-Rate-Pw-2b8e"
# Windows are fixed and numbered from the epoch: a day-long one is not crossed during a test.
DAY = 86400
WRONG = {"username": ADMIN, "password": "not-the-password"}


@asynccontextmanager
async def limited(tmp_path: Path, **overrides: Any) -> AsyncIterator[Stack]:
    values: dict[str, Any] = {"rate_limit_flush_seconds": 0.1, "rate_limit_window_seconds": DAY}
    settings = settings_for(tmp_path / "data", **{**values, **overrides})
    await prepare(settings)
    async with running_stack(settings) as running:
        yield running


def _assert_limited(answer: httpx.Response) -> None:
    assert answer.status_code == 429, answer.text
    assert 1 <= int(answer.headers["Retry-After"]) <= DAY
    result = answer.json()["result"]
    assert result["status"] is False
    assert result["error"]["code"] == 429
    assert result["error"]["message"].startswith("rate limit:")


async def test_auth_is_limited_per_client_and_forwarded_for_is_not_believed(
    tmp_path: Path,
) -> None:
    async with limited(tmp_path, rate_limit_auth=5) as stack, stack.client() as client:
        answers = [await client.post("/auth", json=WRONG) for _ in range(4)]
        assert [a.status_code for a in answers] == [401] * 4
        right = {"username": ADMIN, "password": ADMIN_PASSWORD}
        assert (await client.post("/auth", json=right)).status_code == 200
        # Even the right password waits now; a made-up X-Forwarded-For changes nothing.
        _assert_limited(await client.post("/auth", json=right))
        for fake in ("203.0.113.7", "198.51.100.1, 203.0.113.9"):
            spoofed = await client.post("/auth", json=right, headers={"X-Forwarded-For": fake})
            _assert_limited(spoofed)
        # Other routes are not limited.
        assert (await client.get("/healthz")).status_code == 200


async def test_forwarded_for_counts_from_a_trusted_proxy(tmp_path: Path) -> None:
    async with (
        limited(tmp_path, rate_limit_auth=2, trusted_proxies=["127.0.0.1"]) as stack,
        stack.client() as client,
    ):
        behind = {"X-Forwarded-For": "203.0.113.7"}
        for _ in range(2):
            assert (await client.post("/auth", json=WRONG, headers=behind)).status_code == 401
        _assert_limited(await client.post("/auth", json=WRONG, headers=behind))
        other = {"X-Forwarded-For": "203.0.113.8"}
        assert (await client.post("/auth", json=WRONG, headers=other)).status_code == 401


async def test_token_init_is_limited_for_users_and_admins_alike(tmp_path: Path) -> None:
    async with limited(tmp_path, rate_limit_token_init=3) as stack:
        admin = await stack.admin_token()
        async with stack.client(admin) as client:
            body = {"user": "alice", "realm": "corp", "password": PASSWORD}
            assert (await client.post("/user/", json=body)).status_code == 200
        user = await stack.login("alice@corp", PASSWORD)
        async with stack.client(user) as client:
            for i in range(3):
                init = {"request": make_csr(f"alice{i}"), "ca": "localca"}
                answer = await client.post("/token/init", json=init)
                assert answer.json()["detail"]["rollout_state"] == "enrolled", answer.text
            refused = await client.post(
                "/token/init", json={"request": make_csr("alice3"), "ca": "localca"}
            )
            _assert_limited(refused)
            # Unauthenticated calls from this client are refused alike, before anything else.
            _assert_limited(await client.post("/token/init", headers={"Authorization": ""}))
        async with stack.client(admin) as client:
            init = {"request": make_csr("a"), "ca": "localca", "user": "alice", "realm": "corp"}
            _assert_limited(await client.post("/token/init", json=init))
            listed = await client.get("/token/")
            assert listed.json()["result"]["value"]["count"] == 3


async def _shared_count(stack: Stack, limit: int) -> None:
    """Hits split between two apps: together they admit the limit, not twice it."""
    async with (
        another_api(stack.settings, stack.broker) as second,
        stack.client() as first_client,
        httpx.AsyncClient(base_url=second, timeout=30) as second_client,
    ):
        first = [(await first_client.post("/auth", json=WRONG)).status_code for _ in range(6)]
        assert first == [401] * 6
        await asyncio.sleep(0.5)  # both apps have flushed (every 0.1 s)
        # The second app learns the shared count of a client at its first flush after that
        # client's first hit: until then it decides alone (the documented flush interval's
        # excess), so how many it admits would depend on how fast the requests are.
        second_answers = [await second_client.post("/auth", json=WRONG)]
        await asyncio.sleep(0.5)
        second_answers += [await second_client.post("/auth", json=WRONG) for _ in range(5)]
        assert [a.status_code for a in second_answers] == [401] * (limit - 6) + [429] * (12 - limit)
        _assert_limited(second_answers[-1])
        await asyncio.sleep(0.5)
        # The first app has learnt of the second's hits too.
        _assert_limited(await first_client.post("/auth", json=WRONG))
    async with stack.db.read() as session:
        rows = list(await session.scalars(select(RateLimit)))
    assert [(r.bucket, r.hits) for r in rows] == [("auth:127.0.0.1", limit)]


async def test_two_apps_on_one_sqlite_file_share_the_count(tmp_path: Path) -> None:
    async with limited(tmp_path, rate_limit_auth=8) as stack:
        await _shared_count(stack, 8)


@pytest.mark.postgres
async def test_two_apps_on_postgresql_share_the_count(tmp_path: Path, postgres_url: str) -> None:
    async with limited(tmp_path, rate_limit_auth=8, database_url=postgres_url) as stack:
        await _shared_count(stack, 8)


async def test_past_windows_are_deleted(tmp_path: Path) -> None:
    async with limited(tmp_path, rate_limit_auth=100) as stack:
        async with stack.db.write() as session:
            session.add(RateLimit(bucket="auth:192.0.2.1", window=1, hits=5))
        async with stack.client() as client:
            assert (await client.post("/auth", json=WRONG)).status_code == 401
        for _ in range(50):
            async with stack.db.read() as session:
                windows = set(await session.scalars(select(RateLimit.window)))
            if windows and 1 not in windows:
                break
            await asyncio.sleep(0.05)
        assert windows and 1 not in windows
        async with stack.db.read() as session:
            kept = [(r.bucket, r.hits) for r in await session.scalars(select(RateLimit))]
        assert kept == [("auth:127.0.0.1", 1)]
