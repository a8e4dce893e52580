"""``GET /token/`` lists tokens as privacyIDEA 3.14 does, and offers a PKCS#12 only by serial."""

from __future__ import annotations

import base64
import re
from typing import Any

import httpx
from cryptography.hazmat.primitives.serialization import pkcs12

from shared.db.models import TokenKey
from tests.support.pki import make_csr
from tests.support.stack import Stack

ALICE_PASSWORD = "Alice-List-Pw-7d3e"

# Every key privacyIDEA 3.14 lists for a certificate token, with its type (read off the
# reference: a CSR token and a genkey token of a realm user, one of them revoked).
PRIVACYIDEA_KEYS: dict[str, type] = {
    "active": bool,
    "container_serial": str,
    "count": int,
    "count_window": int,
    "description": str,
    "failcount": int,
    "id": int,
    "info": dict,
    "locked": bool,
    "maxfail": int,
    "otplen": int,
    "readonly_info_keys": list,
    "realms": list,
    "resolver": str,
    "revoked": bool,
    "rollout_state": str,
    "serial": str,
    "settable_info_keys": list,
    "sync_window": int,
    "tokengroup": list,
    "tokentype": str,
    "undeletable_info_keys": list,
    "user_editable": bool,
    "user_id": str,
    "user_realm": str,
    "username": str,
}
INFO_DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")


async def add_alice(admin: httpx.AsyncClient) -> None:
    body = {"user": "alice", "realm": "corp", "password": ALICE_PASSWORD}
    answer = await admin.post("/user/", json=body)
    assert answer.is_success, answer.text


async def init(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    answer = await client.post(
        "/token/init", json={"type": "certificate", "ca": "localca", **fields}
    )
    assert answer.status_code == 200, answer.text
    detail: dict[str, Any] = answer.json()["detail"]
    assert detail["rollout_state"] == "enrolled", answer.text
    return detail


async def listed(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    answer = await client.get("/token/", params=params)
    assert answer.status_code == 200, answer.text
    value: dict[str, Any] = answer.json()["result"]["value"]
    return value


async def downloads(stack: Stack, serial: str) -> int:
    async with stack.db.read() as session:
        key = await session.get(TokenKey, serial)
    assert key is not None
    return key.downloads


async def test_tokens_carry_privacyideas_keys_and_a_revoked_one_looks_revoked(
    memory_stack: Stack,
) -> None:
    stack = memory_stack
    async with stack.client(await stack.admin_token()) as admin:
        await add_alice(admin)
        owner = {"user": "alice", "realm": "corp"}
        by_csr = await init(admin, request=make_csr("alice"), **owner)
        generated = await init(admin, genkey=1, keytype="ec-p256", **owner)
        revoked = await admin.post("/token/revoke", json={"serial": by_csr["serial"]})
        assert revoked.status_code == 200, revoked.text

        page = await listed(admin)
        assert {k: page[k] for k in ("count", "current", "next", "prev")} == {
            "count": 2,
            "current": 1,
            "next": None,
            "prev": None,
        }
        shown = {t["serial"]: t for t in page["tokens"]}
        for token in shown.values():
            types = {k: type(token.get(k)) for k in PRIVACYIDEA_KEYS}
            assert types == PRIVACYIDEA_KEYS, token["serial"]
            assert (token["resolver"], token["username"], token["user_realm"]) == (
                "internal",
                "alice",
                "corp",
            )
            assert token["user_id"].isdigit()
            assert (token["failcount"], token["maxfail"], token["otplen"]) == (0, 10, 6)
            assert (token["tokengroup"], token["container_serial"]) == ([], "")
            assert INFO_DATE.match(token["info"]["creation_date"]), token["info"]
            assert token["info"]["tokenkind"] == "software"
            assert set(token["readonly_info_keys"]) == set(token["info"])
            # A list of several tokens never offers a PKCS#12.
            assert "pkcs12" not in token["info"]
        assert len({t["id"] for t in shown.values()}) == 2
        assert len({t["user_id"] for t in shown.values()}) == 1

        gone = shown[by_csr["serial"]]
        assert (gone["active"], gone["revoked"], gone["locked"]) == (False, True, True)
        assert (gone["rollout_state"], gone["certtoken_state"]) == ("enrolled", "revoked")
        kept = shown[generated["serial"]]
        assert (kept["active"], kept["revoked"], kept["locked"]) == (True, False, False)
        assert (kept["rollout_state"], kept["certtoken_state"]) == ("enrolled", "enrolled")

        # Filters match what is shown: a revoked token is still an enrolled one.
        enrolled = await listed(admin, rollout_state="enrolled")
        assert enrolled["count"] == 2
        only_revoked = await listed(admin, rollout_state="revoked")
        assert [t["serial"] for t in only_revoked["tokens"]] == [by_csr["serial"]]


async def test_info_pkcs12_only_by_serial_only_when_downloadable_and_counted(
    memory_stack: Stack,
) -> None:
    stack = memory_stack
    async with stack.client(await stack.admin_token()) as admin:
        await add_alice(admin)
        for name, policy in {
            "users": {"scope": "user", "action": "enrollCERTIFICATE"},
            "p12-once": {
                "scope": "enroll",
                "action": "certificate_pkcs12_delete_after_download",
                "realm": "corp",
            },
        }.items():
            answer = await admin.post(f"/policy/{name}", json=policy)
            assert answer.status_code == 200, answer.text
        alice = await stack.login("alice@corp", ALICE_PASSWORD)
        async with stack.client(alice) as client:
            first = await init(client, genkey=1, keytype="ec-p256")
            second = await init(client, genkey=1, keytype="ec-p256")
            assert "pkcs12" not in first and "pkcs12" not in second
            serial = first["serial"]

            # The download action refuses alice: no PKCS#12, nothing counted.
            [token] = (await listed(client, serial=serial))["tokens"]
            assert "pkcs12" not in token["info"]
            assert await downloads(stack, serial) == 0

            granted = await admin.post(
                "/policy/users",
                json={"scope": "user", "action": "enrollCERTIFICATE, certificate_download_pkcs12"},
            )
            assert granted.status_code == 200, granted.text
            several = await listed(client)
            assert several["count"] == 2
            assert all("pkcs12" not in t["info"] for t in several["tokens"])
            assert await downloads(stack, serial) == 0

            [token] = (await listed(client, serial=serial))["tokens"]
            der = base64.b64decode(token["info"]["pkcs12"])
            key, cert, _ = pkcs12.load_key_and_certificates(der, first["pkcs12_password"].encode())
            assert key is not None and cert is not None
            assert "pkcs12" in token["readonly_info_keys"]
            assert await downloads(stack, serial) == 1

            # That was the one download delete-after-download allows.
            [token] = (await listed(client, serial=serial))["tokens"]
            assert "pkcs12" not in token["info"]
            assert (await client.get(f"/token/{serial}/pkcs12")).status_code == 410
            assert await downloads(stack, serial) == 1
