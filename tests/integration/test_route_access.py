"""Every route of the api, called by one user against another user's token: each is refused.

The walk reads the routes from the app's OpenAPI document, so a route added later is walked too;
one it cannot aim at another user's data fails the test until it is listed below.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from shared.db.models import Token
from tests.support.pki import make_csr
from tests.support.stack import Stack, prepare, running_stack, settings_for

PASSWORD = "alice-password-1"
BOB_PASSWORD = "bob-password-22"

# Certificate publication for relying parties: no caller, no user data.
PUBLIC = {
    ("post", "/auth"),
    ("get", "/ca/{name}/cacert"),
    ("get", "/ca/{name}/crl"),
    ("get", "/ca/{name}/cacert/{generation}"),
    ("get", "/ca/{name}/crl/{generation}"),
    ("post", "/ca/{name}/ocsp"),
    ("get", "/ca/{name}/ocsp/{encoded}"),
    # The public key that verifies the answers' signatures.
    ("get", "/signature/publickey"),
    # The CA connectors' names and templates, for any caller who may enroll (as privacyIDEA).
    ("get", "/system/names/caconnector"),
}
# Routes for any logged-in caller that read no stored data (tested in their own files).
NO_STORED_DATA = {
    # Decodes the PEM text in its body (tests/integration/test_ui_serving.py).
    ("post", "/certificate/decode"),
}

# Path parameters: another user's token, else any plausible name (admin-only routes refuse first).
PATH_VALUES: dict[str, str] = {
    "name": "localca",
    "template": "default",
    "generation": "1",
    "request_id": "0123456789abcdef",
    "realm": "corp",
    "username": "alice",
    "handlermodule": "UserNotification",
    "delivery_id": "1",
    "handler_id": "1",
    "identifier": "mail",
    "encoded": "MAA",
}


def _requests(path: str, method: str, serial: str) -> list[dict[str, Any]]:
    """The calls that aim this route at alice's data (several for the token list)."""
    if (method, path) == ("get", "/token/"):
        return [
            {"params": {"user": "alice"}},
            {"params": {"user": "alice", "realm": "corp"}},
            {"params": {"serial": serial}},
            {"params": {"realm": "other"}},
        ]
    if (method, path) == ("post", "/token/init"):
        owner = {"type": "certificate", "request": make_csr("alice"), "ca": "localca"}
        return [
            {"json": {**owner, "user": "alice", "realm": "corp"}},
            {"json": {**owner, "user": "alice@corp"}},
            {"json": {"type": "certificate", "genkey": "1", "ca": "localca", "user": "alice"}},
        ]
    if (method, path) == ("post", "/token/revoke"):
        return [{"json": {"serial": serial, "reason": "keyCompromise"}}]
    if (method, path) in (("post", "/token/disable"), ("post", "/token/enable")):
        return [
            {"json": {"serial": serial}},
            {"json": {"user": "alice", "realm": "corp"}},
            {"json": {"user": "alice@corp"}},
        ]
    # Admin-only routes and routes naming the token in the path: any body will do.
    return [{"json": {}}] if method in ("post", "put", "patch") else [{}]


@pytest.fixture
async def two_users(tmp_path: Path) -> AsyncIterator[tuple[Stack, str]]:
    """alice with an enrolled token, bob, and a policy letting users act on their own tokens."""
    settings = settings_for(tmp_path / "data")
    await prepare(settings)
    async with running_stack(settings) as stack:
        async with stack.client(await stack.admin_token()) as admin:
            for user, password in (("alice", PASSWORD), ("bob", BOB_PASSWORD)):
                created = await admin.post(
                    "/user/", json={"user": user, "realm": "corp", "password": password}
                )
                assert created.status_code == 200, created.text
            # With every action granted, only ownership can refuse bob.
            granted = await admin.post(
                "/policy/users-own-tokens",
                json={
                    "scope": "user",
                    "action": "enrollCERTIFICATE, revoke, delete, disable, enable, "
                    "certificate_download_pkcs12",
                    "realm": "corp",
                },
            )
            assert granted.status_code == 200, granted.text
            enrolled = await admin.post(
                "/token/init",
                json={"request": make_csr("alice"), "ca": "localca", "user": "alice@corp"},
            )
            assert enrolled.json()["detail"]["rollout_state"] == "enrolled", enrolled.text
        yield stack, enrolled.json()["detail"]["serial"]


def _path(template: str, serial: str) -> str:
    values = {**PATH_VALUES, "serial": serial}
    path = template
    for name in [p.split("}")[0] for p in template.split("{")[1:]]:
        assert name in values, f"route {template}: give the walk a value for {{{name}}}"
        path = path.replace(f"{{{name}}}", values[name])
    return path


async def test_every_route_refuses_another_users_token(two_users: tuple[Stack, str]) -> None:
    stack, serial = two_users
    async with stack.client() as anonymous:
        document = (await anonymous.get("/openapi.json")).json()
    routes = [
        (path, method)
        for path, operations in document["paths"].items()
        for method in operations
        if (method, path) not in PUBLIC | NO_STORED_DATA
    ]
    assert ("get", "/token/{serial}/pkcs12") in {(m, p) for p, m in routes}

    bob = await stack.login("bob@corp", BOB_PASSWORD)
    walked: list[str] = []
    async with stack.client(bob) as client:
        for path, method in routes:
            for call in _requests(path, method, serial):
                answer = await client.request(method.upper(), _path(path, serial), **call)
                where = f"{method.upper()} {path} {call.get('params', '')}"
                assert answer.status_code == 403, f"{where}: {answer.status_code} {answer.text}"
                message = answer.json()["result"]["error"]["message"]
                assert len(message) > 10, f"{where}: no reason given ({message!r})"
                walked.append(where)
    assert len(walked) >= len(routes)

    # Nothing of alice's changed, and her own calls still work.
    async with stack.db.read() as session:
        tokens = list(await session.scalars(select(Token)))
    assert [(t.serial, t.username, t.rollout_state) for t in tokens] == [
        (serial, "alice", "enrolled")
    ]
    alice = await stack.login("alice@corp", PASSWORD)
    async with stack.client(alice) as client:
        mine = (await client.get("/token/", params={"serial": serial})).json()["result"]["value"]
        assert mine["count"] == 1


async def test_a_user_without_a_granting_policy_may_not_revoke(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "data")
    await prepare(settings)
    async with running_stack(settings) as stack:
        async with stack.client(await stack.admin_token()) as admin:
            await admin.post(
                "/user/", json={"user": "alice", "realm": "corp", "password": PASSWORD}
            )
        alice = await stack.login("alice@corp", PASSWORD)
        async with stack.client(alice) as client:
            own = await client.post(
                "/token/init", json={"request": make_csr("alice"), "ca": "localca"}
            )
            assert own.status_code == 200, own.text
            serial = own.json()["detail"]["serial"]
            for call in (
                client.post("/token/revoke", json={"serial": serial}),
                client.delete(f"/token/{serial}"),
            ):
                answer: httpx.Response = await call
                assert answer.status_code == 403, answer.text
                assert "policy" in answer.json()["result"]["error"]["message"]
        async with stack.db.read() as session:
            token = await session.get(Token, serial)
        assert token is not None and token.rollout_state == "enrolled"
