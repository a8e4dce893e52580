"""``GET /audit/`` answers with privacyIDEA 3.14's columns, types and paging parameter."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import httpx

from tests.support.stack import ADMIN, Stack

# privacyIDEA 3.14's auditcolumns, in its order, with the JSON type of each value.
PI_COLUMNS: dict[str, type] = {
    "number": int,
    "action": str,
    "success": int,
    "authentication": str,
    "serial": str,
    "date": str,
    "startdate": str,
    "duration": float,
    "token_type": str,
    "user": str,
    "realm": str,
    "administrator": str,
    "action_detail": str,
    "info": str,
    "privacyidea_server": str,
    "client": str,
    "user_agent": str,
    "user_agent_version": str,
    "log_level": str,
    "policies": str,
    "clearance_level": str,
    "sig_check": str,
    "missing_line": str,
    "resolver": str,
    "thread_id": str,
    "container_serial": str,
    "container_type": str,
}


async def _audit(client: httpx.AsyncClient, at_least: int, **params: Any) -> dict[str, Any]:
    """``GET /audit/`` once at least *at_least* rows match (rows are written after replies)."""
    for _ in range(1000):
        answer = await client.get("/audit/", params=params)
        assert answer.status_code == 200, answer.text
        value: dict[str, Any] = answer.json()["result"]["value"]
        if value["count"] >= at_least:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError(f"fewer than {at_least} audit rows match {params}")


async def test_audit_rows_have_privacyideas_columns(memory_stack: Stack) -> None:
    token = await memory_stack.admin_token()
    async with memory_stack.client() as anonymous:
        wrong = await anonymous.post("/auth", json={"username": ADMIN, "password": "wrong-pw-1"})
        assert wrong.status_code == 401
    async with memory_stack.client(token) as client:
        missing = await client.delete("/token/CRT0000AB12", headers={"User-Agent": "curl/8.5.0"})
        assert missing.status_code == 404

        logins = await _audit(client, 2, action="POST /auth", page_size=5)
        assert logins["auditcolumns"] == list(PI_COLUMNS)
        for row in logins["auditdata"]:
            assert {k: type(row[k]) for k in PI_COLUMNS} == PI_COLUMNS, row
            assert datetime.fromisoformat(row["date"]) >= datetime.fromisoformat(row["startdate"])
            assert (row["user_agent"], row["log_level"]) == ("python-httpx", "default")
            assert row["user_agent_version"] and row["privacyidea_server"]
        rejected, accepted = logins["auditdata"]
        assert (rejected["success"], rejected["authentication"]) == (0, "REJECT")
        assert (rejected["administrator"], rejected["user"]) == ("", ADMIN)
        assert (accepted["success"], accepted["authentication"]) == (1, "ACCEPT")
        assert accepted["administrator"] == ADMIN

        [delete] = (await _audit(client, 1, serial="CRT0000AB12"))["auditdata"]
        assert delete["action"] == "DELETE /token/<serial>"
        assert (delete["success"], delete["token_type"], delete["administrator"]) == (
            0,
            "certificate",
            ADMIN,
        )
        assert (delete["user_agent"], delete["user_agent_version"]) == ("curl", "8.5.0")
        assert delete["authentication"] == ""

        # privacyIDEA's page_size pages the audit (pagesize still works too).
        one = await _audit(client, 3, page_size=1)
        assert len(one["auditdata"]) == 1 and one["next"] == 2
        assert len((await _audit(client, 3, pagesize=2))["auditdata"]) == 2
