"""privacyIDEA's configuration routes: /user/ (create, wildcard search), /realm/, CA names.

Shapes as privacyIDEA 3.14 answers them (checked against the reference): POST /user/ is a 200
carrying the new user's id, GET /realm/ maps realm names to {default, id, resolver} and
GET /system/names/caconnector lists connectors with their templates and no configuration.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from shared.config import Settings
from tests.support.stack import Stack, prepare, running_stack, settings_for

PASSWORD = "Config-Routes-Pw-93"
# "_" is LIKE's one-character wildcard: in a search it must match only itself.
LOGINS = ["alice", "alina", "bob", "a_b", "axb", "ALIX"]


async def _add_users(client: httpx.AsyncClient) -> list[int]:
    ids = []
    for login in LOGINS:
        realm = "other" if login == "bob" else "corp"
        body = {"user": login, "realm": realm, "password": PASSWORD}
        answer = await client.post("/user/", json=body)
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["result"]["value"])
    return ids


def _names(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return sorted(u["username"] for u in answer.json()["result"]["value"])


async def test_user_creation_and_wildcard_search(prepared_settings: Settings) -> None:
    running = running_stack(prepared_settings, worker=False)
    async with running as stack, stack.client(await stack.admin_token()) as client:
        ids = await _add_users(client)
        assert all(isinstance(i, int) for i in ids) and len(set(ids)) == len(ids)
        listed = (await client.get("/user/", params={"username": "alice"})).json()
        [alice] = listed["result"]["value"]
        assert (alice["userid"], alice["resolver"], alice["realm"]) == (
            str(ids[0]),
            "internal",
            "corp",
        )

        async def search(**params: str) -> list[str]:
            return _names(await client.get("/user/", params=params))

        assert await search(username="*") == sorted(LOGINS)
        assert await search(username="*", realm="other") == ["bob"]
        # Case-insensitive like privacyIDEA's search; "*" anywhere in the value.
        assert await search(username="ali*") == ["ALIX", "alice", "alina"]
        assert await search(username="a*b") == ["a_b", "axb"]
        assert await search(username="*c*") == ["alice"]
        # LIKE's own wildcards are plain characters, with or without a "*".
        assert await search(username="a_b") == ["a_b"]
        assert await search(username="a_*") == ["a_b"]
        assert await search(username="a%*") == []
        assert await search(username="a\\*") == []
        # Without "*" the name matches exactly, as before.
        assert await search(username="ALICE") == []


async def _realm_stack_users(stack: Stack) -> None:
    async with stack.client(await stack.admin_token()) as client:
        await _add_users(client)
        helpdesk = {"user": "carol", "realm": "helpdesk", "password": PASSWORD}
        assert (await client.post("/user/", json=helpdesk)).status_code == 200


async def test_realms_in_privacyideas_shape(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "data", superuser_realms=["helpdesk"])
    await prepare(settings)
    async with running_stack(settings, worker=False) as stack:
        await _realm_users_see(stack)


async def _realm_users_see(stack: Stack) -> None:
    await _realm_stack_users(stack)
    async with stack.client(await stack.admin_token()) as client:
        answer = await client.get("/realm/")
        assert answer.status_code == 200, answer.text
        realms = answer.json()["result"]["value"]
        assert sorted(realms) == ["corp", "helpdesk", "other"]
        for realm in realms.values():
            assert realm["default"] is False and isinstance(realm["id"], int)
            assert realm["resolver"] == [
                {"name": "internal", "node": "", "priority": None, "type": "sqlresolver"}
            ]
        assert len({r["id"] for r in realms.values()}) == 3
        # Realm admins see the realms their admin policies cover.
        policy = {"scope": "admin", "action": "revoke", "realm": "corp", "adminrealm": "helpdesk"}
        assert (await client.post("/policy/corp-helpdesk", json=policy)).status_code == 200
    carol = await stack.login("carol@helpdesk", PASSWORD)
    alice = await stack.login("alice@corp", PASSWORD)
    async with stack.client(carol) as client:
        assert list((await client.get("/realm/")).json()["result"]["value"]) == ["corp"]
    async with stack.client(alice) as client:
        refused = await client.get("/realm/")
        assert refused.status_code == 403, refused.text


async def test_caconnector_names_for_whoever_may_enroll(memory_stack: Stack) -> None:
    stack = memory_stack
    await _realm_stack_users(stack)
    async with stack.client(await stack.admin_token()) as client:
        made = await client.post("/caconnector/localca/templates/short", json={"validity_days": 7})
        assert made.status_code == 200, made.text
        answer = await client.get("/system/names/caconnector")
        assert answer.status_code == 200, answer.text
        [connector] = answer.json()["result"]["value"]
        assert connector["connectorname"] == "localca" and connector["type"] == "local"
        assert connector["data"] == {}  # no configuration, as privacyIDEA
        assert sorted(connector["templates"]) == ["default", "short"]
        assert connector["templates"]["short"]["validity_days"] == 7
        # The same templates in the connector's own answer, a one-element list.
        [shown] = (await client.get("/caconnector/localca")).json()["result"]["value"]
        assert shown["templates"] == connector["templates"]
        assert (await client.get("/caconnector/nosuch")).json()["result"]["value"] == []

    alice = await stack.login("alice@corp", PASSWORD)
    async with stack.client(alice) as client:
        # Users may enroll while no user policy exists for their realm: they see the names.
        assert (await client.get("/system/names/caconnector")).status_code == 200
    async with stack.client(await stack.admin_token()) as client:
        policy = {"scope": "user", "action": "revoke", "realm": "corp"}
        assert (await client.post("/policy/corp-users", json=policy)).status_code == 200
        policy = {"scope": "admin", "action": "revoke"}
        assert (await client.post("/policy/admins", json=policy)).status_code == 200
        refused = await client.get("/system/names/caconnector")
        assert refused.status_code == 403, refused.text
        assert refused.json()["result"]["error"]["message"].startswith("enrollCERTIFICATE: ")
    async with stack.client(alice) as client:
        refused = await client.get("/system/names/caconnector")
        assert refused.status_code == 403, refused.text
        assert refused.json()["result"]["error"]["message"].startswith("enrollCERTIFICATE: ")
