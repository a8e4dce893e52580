"""GET /system/names/caconnector: a user sees only what their enrollment policies fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.ca_worker.ca_create import create_local_ca
from shared.db.session import Database
from tests.support.stack import Stack, prepare, running_stack, settings_for

PASSWORD = "Names-Policy-Pw-47"


async def _names(stack: Stack, token: str) -> dict[str, list[str]]:
    """Connector name -> its template names, as *token*'s caller is offered them."""
    async with stack.client(token) as client:
        answer = await client.get("/system/names/caconnector")
    assert answer.status_code == 200, answer.text
    value: list[dict[str, Any]] = answer.json()["result"]["value"]
    return {c["connectorname"]: sorted(c["templates"]) for c in value}


async def test_users_see_the_connector_and_template_their_policy_fixes(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "data")
    await prepare(settings)
    db = Database(settings.resolved_database_url)
    try:
        await create_local_ca(settings, db, "otherca")
    finally:
        await db.dispose()
    async with running_stack(settings, worker=False) as stack:
        admin = await stack.admin_token()
        async with stack.client(admin) as client:
            for login, realm in (("alice", "corp"), ("bob", "sales"), ("carol", "lab")):
                body = {"user": login, "realm": realm, "password": PASSWORD}
                assert (await client.post("/user/", json=body)).status_code == 200
            for template in ("short", "held"):
                made = await client.post(f"/caconnector/otherca/templates/{template}", json={})
                assert made.status_code == 200, made.text
            fixed = {
                "scope": "enroll",
                "action": "certificate_ca_connector=otherca, certificate_template=held",
                "realm": "corp",
            }
            assert (await client.post("/policy/corp-fixed", json=fixed)).status_code == 200
            only_ca = {"scope": "enroll", "action": "certificate_ca_connector=otherca"}
            only_ca["realm"] = "lab"
            assert (await client.post("/policy/lab-ca", json=only_ca)).status_code == 200
        everything = {"localca": ["default"], "otherca": ["default", "held", "short"]}
        # Administrators enroll for anyone: every connector, every template.
        assert await _names(stack, admin) == everything
        alice = await stack.login("alice@corp", PASSWORD)
        assert await _names(stack, alice) == {"otherca": ["held"]}
        carol = await stack.login("carol@lab", PASSWORD)
        assert await _names(stack, carol) == {"otherca": ["default", "held", "short"]}
        # No policy fixes anything in sales: all of them.
        bob = await stack.login("bob@sales", PASSWORD)
        assert await _names(stack, bob) == everything
