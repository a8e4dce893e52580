"""The operator's ``token`` and ``request`` commands, as processes, against a running system."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

from sqlalchemy import select

from shared.db.models import AuditEntry, CARequest
from tests.integration.test_ca_approval import APPROVED_TEMPLATE, init, setup_owner
from tests.support.pki import make_csr
from tests.support.procs import Processes, embedded
from tests.support.stack import Stack


async def _cli(procs: Processes, *args: str) -> subprocess.CompletedProcess[str]:
    # In a thread: the system under test runs in this event loop and must keep running.
    return await asyncio.to_thread(procs.cli, *args)


async def _json(procs: Processes, *args: str) -> Any:
    done = await _cli(procs, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def _token(stack: Stack, admin: str, serial: str) -> dict[str, Any]:
    async with stack.client(admin) as client:
        answer = await client.get("/token/", params={"serial": serial, "pkcs12": "false"})
    assert answer.status_code == 200, answer.text
    [token] = answer.json()["result"]["value"]["tokens"]
    result: dict[str, Any] = token
    return result


async def test_operator_lists_decides_and_revokes_from_a_shell(
    memory_stack: Stack, tmp_path: Path
) -> None:
    stack = memory_stack
    procs = embedded(stack.settings.data_dir, tmp_path)
    admin = await stack.admin_token()
    await setup_owner(stack, admin)
    async with stack.client(admin) as client:
        made = await client.post("/caconnector/localca/templates/approved", json=APPROVED_TEMPLATE)
        assert made.status_code == 200, made.text
        to_approve = await init(client, cn="alice-1")
        to_deny = await init(client, cn="alice-2")
        issued = await client.post(
            "/token/init",
            json={
                "type": "certificate",
                "request": make_csr("alice-3"),
                "ca": "localca",
                "user": "alice",
                "realm": "corp",
            },
        )
        assert issued.status_code == 200, issued.text
        enrolled = issued.json()["detail"]["serial"]

    # Pending requests, for scripts and for people.
    pending = await _json(procs, "request", "list", "--ca", "localca")
    assert pending["count"] == 2
    by_serial = {r["serial"]: r for r in pending["requests"]}
    assert by_serial[to_approve["serial"]]["request_id"] == to_approve["request_id"]
    assert by_serial[to_approve["serial"]]["csr"]["subject"] == "CN=alice-1"
    table = await _cli(procs, "request", "list")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:3] == ["ID", "CA", "SERIAL"]
    assert to_deny["request_id"] in table.stdout and "CN=alice-2" in table.stdout

    # Approve: the running ca_worker issues, the api shows it enrolled.
    approved = await _json(procs, "request", "approve", to_approve["request_id"])
    assert approved["action"] == "approve" and approved["done"] is True
    assert approved["state"] == "enrolled"
    assert approved["by"].startswith("cli:")
    shown = await _token(stack, admin, to_approve["serial"])
    assert shown["certtoken_state"] == "enrolled"
    assert "BEGIN CERTIFICATE" in shown["info"]["certificate"]

    denied = await _cli(procs, "request", "deny", to_deny["request_id"], "--reason", "no need")
    assert denied.returncode == 0, denied.stderr
    assert f"request {to_deny['request_id']}" in denied.stdout and "is denied" in denied.stdout
    assert (await _token(stack, admin, to_deny["serial"]))["certtoken_state"] == "denied"

    # The same refusals as the api's, without a traceback.
    again = await _cli(procs, "request", "approve", to_approve["request_id"])
    assert again.returncode == 1
    assert "request:" in again.stderr and "already decided" in again.stderr
    assert "Traceback" not in again.stderr

    # Tokens with filters; show without secrets.
    listed = await _json(
        procs, "token", "list", "--user", "alice", "--state", "enrolled", "--limit", "5"
    )
    assert {t["serial"] for t in listed["tokens"]} == {to_approve["serial"], enrolled}
    assert all(t["not_after"] for t in listed["tokens"])
    assert listed["count"] == 2

    # Revoke: the ca_worker revokes at the CA; the api shows the token revoked.
    revoked = await _json(procs, "token", "revoke", enrolled, "--reason", "keyCompromise")
    assert revoked["done"] is True and revoked["state"] == "revoked"
    shown = await _token(stack, admin, enrolled)
    assert shown["revoked"] is True and shown["certtoken_state"] == "revoked"
    after = await _json(procs, "token", "show", enrolled)
    assert after["serial"] == enrolled and after["certtoken_state"] == "revoked"
    assert after["revocation_reason"] == "keyCompromise" and after["certificate_revoked_at"]
    assert after["pkcs12"] is None and "pkcs12" not in after["info"]

    # The audit and the request say the CLI did it.
    async with stack.db.read() as session:
        audit = (await session.scalars(select(AuditEntry).where(AuditEntry.role == "cli"))).all()
        decided = await session.get(CARequest, to_deny["request_id"])
    actions = {(a.action, a.serial) for a in audit}
    assert ("certtoken request approve", to_approve["serial"]) in actions
    assert ("certtoken request deny", to_deny["serial"]) in actions
    assert ("certtoken token revoke", enrolled) in actions
    assert decided is not None and decided.reason == "no need"
    assert decided.decided_by == approved["by"]
    assert {a.caller for a in audit} == {approved["by"].removeprefix("cli:")}
