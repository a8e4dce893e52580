"""Token limits hold under concurrency: two apis on one database, many enrollments at once."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from shared.config import Settings
from shared.db.models import Token
from tests.support.pki import make_csr
from tests.support.stack import Stack, another_api, running_stack

PASSWORD = "Limit-Race-Pw-5d1a"
CONCURRENT = 10


async def _setup(stack: Stack, client: httpx.AsyncClient, action: str) -> None:
    created = await client.post(
        "/user/", json={"user": "alice", "realm": "corp", "password": PASSWORD}
    )
    assert created.status_code == 200, created.text
    policy = await client.post("/policy/limit", json={"scope": "enroll", "action": action})
    assert policy.status_code == 200, policy.text


async def _race(stack: Stack, settings: Settings, action: str, **body: Any) -> list[httpx.Response]:
    """CONCURRENT enrollments for alice at once, half through each of two apis."""
    token = await stack.admin_token()
    async with stack.client(token) as first:
        await _setup(stack, first, action)
        # Started after the policy: the second api reads it fresh.
        async with (
            another_api(settings, stack.broker) as url,
            httpx.AsyncClient(base_url=url, headers={"Authorization": token}, timeout=60) as other,
        ):
            payload = {"type": "certificate", "user": "alice@corp", "ca": "localca", **body}
            return list(
                await asyncio.gather(
                    *(
                        (first if i % 2 else other).post(
                            "/token/init", json={**payload, "request": make_csr(f"race{i}")}
                        )
                        for i in range(CONCURRENT)
                    )
                )
            )


async def _stored(stack: Stack) -> int:
    async with stack.db.read() as session:
        return await session.scalar(select(func.count()).select_from(Token)) or 0


@pytest.mark.parametrize(
    ("action", "refusal"),
    [
        (
            "max_token_per_user=2",
            "max_token_per_user: user alice@corp has 2 tokens, the policy allows 2",
        ),
        (
            "max_active_token_per_user=1",
            "max_active_token_per_user: user alice@corp has 1 active tokens, the policy allows 1",
        ),
    ],
)
async def test_concurrent_enrollments_take_exactly_the_free_places(
    prepared_settings: Settings, action: str, refusal: str
) -> None:
    limit = int(action.rpartition("=")[2])
    async with running_stack(prepared_settings) as stack:
        answers = await _race(stack, prepared_settings, action)
        accepted = [a for a in answers if a.status_code == 200]
        refused = [a for a in answers if a.status_code != 200]
        assert len(accepted) == limit, [a.text for a in answers]
        for answer in refused:
            # The same answer as a single request over the limit gets.
            assert answer.status_code == 403, answer.text
            error = answer.json()["result"]["error"]
            assert (error["code"], error["message"]) == (303, refusal)
        assert await _stored(stack) == limit
