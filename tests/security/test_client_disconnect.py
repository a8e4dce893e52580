"""A client that leaves mid-body: audited as 499 (client closed request), no ERROR, no traceback."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from shared.db.models import AuditEntry
from tests.support.stack import Stack


async def leave_mid_body(stack: Stack, path: str, token: str = "") -> None:
    """Send headers promising 1000 bytes and part of them, then close the connection."""
    where = urlsplit(stack.url)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    auth = f"Authorization: {token}\r\n" if token else ""
    writer.write(
        (
            f"POST {path} HTTP/1.1\r\nHost: {where.netloc}\r\n{auth}"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            '{"username": "adm'
        ).encode()
    )
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    await writer.wait_closed()
    del reader


async def refused(stack: Stack, action: str) -> list[AuditEntry]:
    """The audit rows of *action* that are no 200, once there are any (rows are written in
    batches after the answer; the login's own 200 row may come first)."""
    for _ in range(200):
        async with stack.db.read() as session:
            rows = list(
                await session.scalars(
                    select(AuditEntry).where(AuditEntry.action == action, AuditEntry.status != 200)
                )
            )
        if rows:
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError(f"no refused audit row for {action}")


async def test_a_client_leaving_mid_body_is_no_server_error(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    token = await stack.admin_token()
    await leave_mid_body(stack, "/auth")
    await leave_mid_body(stack, "/token/init", token)
    for action in ("POST /auth", "POST /token/init"):
        rows = await refused(stack, action)
        assert [(r.status, r.success) for r in rows] == [(499, False)], action
        assert rows[0].info == "client closed the connection mid-request"
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]
    # The server goes on answering.
    async with stack.client(token) as admin:
        assert (await admin.get("/token/")).status_code == 200
