"""Text no database stores (NUL, lone surrogates) and times outside UTC's years: 400, not 500.

Found by the schemathesis run: PostgreSQL refuses NUL in text, so such a query was a 500 and
its audit row sank the whole batch of rows written with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from shared.db.models import AuditEntry
from tests.support.stack import Stack, prepare, running_stack, settings_for

JSON = {"content-type": "application/json"}
NUL_QUERY = "request: the path and query may not hold NUL characters"
BAD_TEXT = "body: text may not hold NUL characters or lone surrogates"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    """The system on each database."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else ""
    settings = settings_for(tmp_path / "data", database_url=url)
    await prepare(settings)
    async with running_stack(settings) as running:
        yield running


def message_of(answer: httpx.Response) -> str:
    """The message of a 400."""
    assert answer.status_code == 400, answer.text
    message: str = answer.json()["result"]["error"]["message"]
    return message


async def test_nul_and_lone_surrogates_are_refused(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    refusals = 0
    async with stack.client(await stack.admin_token()) as admin:
        for path, params in (
            ("/token/", {"serial": "\x00"}),
            ("/token/", {"user": "a\x00b"}),
            ("/audit/", {"caller": "\x00"}),
            ("/policy/a%00b", {}),
            ("/user/", {"realm": "corp", "username": "\x00"}),
        ):
            assert message_of(await admin.get(path, params=params)) == NUL_QUERY, path
            refusals += 1
        assert message_of(await admin.delete("/token/a%00b")) == NUL_QUERY
        for path, body in (
            ("/auth", b'{"username": "a\\u0000b", "password": "x"}'),
            ("/auth", b'{"username": "\\ud800", "password": "x"}'),
            ("/user/", b'{"user": "bob", "realm": "corp", "givenname": "\\u0000"}'),
            ("/event/test", b'{"event": "token_init", "data": {"serial": "\\udc00x"}}'),
            ("/event/test", b'{"event": "token_init", "data": {"\\u0000": 1}}'),
        ):
            assert message_of(await admin.post(path, content=body, headers=JSON)) == BAD_TEXT
            refusals += 1
        form = {"user": "bob", "realm": "corp", "surname": "a\x00"}
        assert message_of(await admin.post("/user/", data=form)) == BAD_TEXT
        refusals += 2
        # Escapes that are neither are fine: a surrogate pair, an escaped backslash and "u0000".
        ok = b'{"event": "token_init", "data": {"a": "\\ud83d\\ude00", "b": "\\\\u0000"}}'
        assert (await admin.post("/event/test", content=ok, headers=JSON)).status_code == 200
    # Every refusal was audited: none of the rows was lost with a refused one. The audit log
    # writes in batches, in the background: wait (bounded) for its rows.
    refused = 0
    for _ in range(100):
        async with stack.db.read() as session:
            refused = await session.scalar(
                select(func.count()).select_from(AuditEntry).where(AuditEntry.status == 400)
            )
        if refused >= refusals:
            break
        await asyncio.sleep(0.1)
    errors = [r.getMessage()[:200] for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors
    assert refused == refusals


async def test_times_outside_utc_years_are_refused(stack: Stack) -> None:
    async with stack.client(await stack.admin_token()) as admin:
        for params in (
            {"since": "0001-01-01T00:00:00+14:00"},
            {"until": "9999-12-31T23:59:59-14:00"},
        ):
            message = message_of(await admin.get("/audit/", params=params))
            assert message.endswith(": outside the years 1 to 9999 in UTC"), message
        edge = {"since": "0001-01-01T00:00:00", "until": "9999-12-31T23:59:59+00:00"}
        assert (await admin.get("/audit/", params=edge)).status_code == 200
