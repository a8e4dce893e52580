"""``Idempotency-Key`` on ``POST /token/init``: one token per key and body, per caller, for a day."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from shared.config import Settings
from shared.db.models import IdempotencyKey, Token, utcnow
from tests.support.pki import make_csr, self_signed_pem
from tests.support.stack import Stack, another_api, running_stack

PASSWORD = "Idem-Key-Pw-8c2f"
HEADER = "Idempotency-Key"


async def _alice(client: httpx.AsyncClient) -> None:
    body = {"user": "alice", "realm": "corp", "password": PASSWORD}
    assert (await client.post("/user/", json=body)).status_code == 200


def _body(name: str = "idem", **fields: Any) -> dict[str, Any]:
    return {
        "type": "certificate",
        "user": "alice@corp",
        "ca": "localca",
        "request": make_csr(name),
        **fields,
    }


def _detail(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    detail: dict[str, Any] = answer.json()["detail"]
    return detail


def _error(answer: httpx.Response, status: int) -> str:
    assert answer.status_code == status, answer.text
    message: str = answer.json()["result"]["error"]["message"]
    return message


async def _count(stack: Stack, model: type[Any]) -> int:
    async with stack.db.read() as session:
        return await session.scalar(select(func.count()).select_from(model)) or 0


async def test_the_same_key_and_body_answer_the_same_token(memory_stack: Stack) -> None:
    async with memory_stack.client(await memory_stack.admin_token()) as client:
        await _alice(client)
        body = _body()
        first = _detail(await client.post("/token/init", json=body, headers={HEADER: "k-1"}))
        again = _detail(await client.post("/token/init", json=body, headers={HEADER: "k-1"}))
        # The token as it is now: enrolled, with its certificate.
        assert first["rollout_state"] == again["rollout_state"] == "enrolled"
        stored = ("serial", "rollout_state", "certificate")
        assert {k: v for k, v in again.items() if k != "threadid"} == {k: first[k] for k in stored}
        # An uploaded certificate likewise (without the key, a second upload is a 400).
        upload = {"type": "certificate", "user": "alice@corp", "certificate": self_signed_pem()}
        one = _detail(await client.post("/token/init", json=upload, headers={HEADER: "up"}))
        two = _detail(await client.post("/token/init", json=upload, headers={HEADER: "up"}))
        assert one["serial"] == two["serial"]
        assert await _count(memory_stack, Token) == 2
        # Without the header, as before: a new token each time.
        fresh = _detail(await client.post("/token/init", json=body))
        assert fresh["serial"] != first["serial"]


async def test_the_same_key_with_another_body_is_a_conflict(memory_stack: Stack) -> None:
    async with memory_stack.client(await memory_stack.admin_token()) as client:
        await _alice(client)
        _detail(await client.post("/token/init", json=_body("a"), headers={HEADER: "k-2"}))
        other = await client.post("/token/init", json=_body("b"), headers={HEADER: "k-2"})
        assert _error(other, 409).startswith(f"{HEADER}: this key was used with another")
        assert await _count(memory_stack, Token) == 1
        assert await _count(memory_stack, IdempotencyKey) == 1


async def test_keys_belong_to_their_caller(memory_stack: Stack) -> None:
    async with memory_stack.client(await memory_stack.admin_token()) as admin:
        await _alice(admin)
        by_admin = _detail(await admin.post("/token/init", json=_body(), headers={HEADER: "mine"}))
    async with memory_stack.client(await memory_stack.login("alice@corp", PASSWORD)) as alice:
        by_alice = _detail(await alice.post("/token/init", json=_body(), headers={HEADER: "mine"}))
    assert by_admin["serial"] != by_alice["serial"]
    assert await _count(memory_stack, Token) == 2


@pytest.mark.parametrize(
    "value",
    ["", "x" * 256, "tab\tinside", b"caf\xe9"],
    ids=["empty", "too-long", "control", "non-ascii"],
)
async def test_a_malformed_key_is_a_400_naming_the_header(
    memory_stack: Stack, value: str | bytes
) -> None:
    async with memory_stack.client(await memory_stack.admin_token()) as client:
        await _alice(client)
        answer = await client.post("/token/init", json=_body(), headers={HEADER: value})
        assert _error(answer, 400).startswith(f"{HEADER}: ")
        assert await _count(memory_stack, Token) == 0


async def test_an_expired_key_is_not_honoured_and_is_purged(memory_stack: Stack) -> None:
    async with memory_stack.client(await memory_stack.admin_token()) as client:
        await _alice(client)
        body = _body()
        first = _detail(await client.post("/token/init", json=body, headers={HEADER: "old"}))
        async with memory_stack.db.write() as session:
            await session.execute(
                update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=24, minutes=1))
            )
        later = _detail(await client.post("/token/init", json=body, headers={HEADER: "old"}))
        assert later["serial"] != first["serial"]
        async with memory_stack.db.read() as session:
            kept = list(await session.scalars(select(IdempotencyKey.serial)))
        assert kept == [later["serial"]]


async def test_concurrent_requests_with_one_key_make_one_token(prepared_settings: Settings) -> None:
    async with running_stack(prepared_settings) as stack:
        token = await stack.admin_token()
        async with stack.client(token) as first:
            await _alice(first)
            async with (
                another_api(prepared_settings, stack.broker) as url,
                httpx.AsyncClient(
                    base_url=url, headers={"Authorization": token}, timeout=60
                ) as other,
            ):
                body = _body()
                answers = await asyncio.gather(
                    *(
                        (first if i % 2 else other).post(
                            "/token/init", json=body, headers={HEADER: "together"}
                        )
                        for i in range(8)
                    )
                )
        serials = {_detail(answer)["serial"] for answer in answers}
        assert len(serials) == 1
        assert await _count(stack, Token) == 1
        assert await _count(stack, IdempotencyKey) == 1


async def test_the_header_is_documented(memory_stack: Stack) -> None:
    async with memory_stack.client() as client:
        spec = (await client.get("/openapi.json")).json()
    parameters = spec["paths"]["/token/init"]["post"]["parameters"]
    [header] = [p for p in parameters if p["name"] == HEADER]
    assert header["in"] == "header"
    assert "24 hours" in header["description"]
