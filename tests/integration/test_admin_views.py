"""What the web UI's admin pages read: the token list by CA and certtoken state, and whether a
held request's key was attested."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.ca_worker.ca_create import create_local_ca
from shared.attestation import AttestationMode
from tests.integration.test_enroll_modes import YUBIKEY_ATTESTATION, YUBIKEY_CSR, _trust_dir
from tests.support.pki import make_csr
from tests.support.stack import Stack, prepare, running_stack, settings_for

APPROVAL = {"approval": "required", "validity_days": 30}


async def _init(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"type": "certificate", "user": "alice", "realm": "corp", "ca": "localca", **fields}
    answer = await client.post("/token/init", json=body)
    assert answer.status_code == 200, answer.text
    detail: dict[str, Any] = answer.json()["detail"]
    return detail


async def _serials(client: httpx.AsyncClient, **params: Any) -> list[str]:
    answer = await client.get("/token/", params=params)
    assert answer.status_code == 200, answer.text
    return [t["serial"] for t in answer.json()["result"]["value"]["tokens"]]


async def _setup(client: httpx.AsyncClient) -> None:
    added = await client.post("/user/", json={"user": "alice", "realm": "corp"})
    assert added.status_code == 200, added.text
    made = await client.post("/caconnector/localca/templates/held", json=APPROVAL)
    assert made.status_code == 200, made.text


async def test_token_list_filters_by_ca_and_certtoken_state(stack: Stack) -> None:
    await create_local_ca(stack.settings, stack.db, "otherca")
    token = await stack.admin_token()
    async with stack.client(token) as client:
        await _setup(client)
        local = await _init(client, request=make_csr())
        held = await _init(client, request=make_csr(), template="held")
        other = await _init(client, request=make_csr(), ca="otherca")
        assert (local["rollout_state"], held["rollout_state"]) == ("enrolled", "pending")
        assert other["rollout_state"] == "enrolled"
        revoked = await client.post("/token/revoke", json={"serial": local["serial"]})
        assert revoked.status_code == 200, revoked.text

        assert await _serials(client, ca="otherca") == [other["serial"]]
        assert await _serials(client, ca="localca") == [local["serial"], held["serial"]]
        assert await _serials(client, ca="nosuchca") == []
        assert await _serials(client, certtoken_state="pending") == [held["serial"]]
        # certtoken's own state tells revoked from enrolled; privacyIDEA's rollout_state does not.
        assert await _serials(client, certtoken_state="revoked") == [local["serial"]]
        assert await _serials(client, certtoken_state="enrolled") == [other["serial"]]
        assert await _serials(client, rollout_state="enrolled") == [
            local["serial"],
            other["serial"],
        ]
        both = await _serials(client, ca="localca", certtoken_state="enrolled")
        assert both == []
        paged = (await client.get("/token/", params={"ca": "localca", "pagesize": 1})).json()
        assert paged["result"]["value"]["count"] == 2
        assert paged["result"]["value"]["next"] == 2

        bad = await client.get("/token/", params={"certtoken_state": "lost"})
        assert bad.status_code == 400, bad.text
        assert bad.json()["result"]["error"]["message"].startswith("certtoken_state")
        long = await client.get("/token/", params={"ca": "x" * 121})
        assert long.status_code == 400, long.text
        assert long.json()["result"]["error"]["message"].startswith("ca")


@pytest.fixture
async def verifying(tmp_path: Path) -> AsyncIterator[Stack]:
    """The system verifying attestations when given, with the Yubico root trusted."""
    settings = settings_for(
        tmp_path / "data",
        require_attestation=AttestationMode.VERIFY,
        attestation_ca_path=_trust_dir(tmp_path),
    )
    await prepare(settings)
    async with running_stack(settings) as running:
        yield running


async def test_held_requests_say_whether_the_key_was_attested(verifying: Stack) -> None:
    token = await verifying.admin_token()
    async with verifying.client(token) as client:
        await _setup(client)
        attested = await _init(
            client, request=YUBIKEY_CSR, attestation=YUBIKEY_ATTESTATION, template="held"
        )
        plain = await _init(client, request=make_csr(), template="held")
        answer = await client.get("/ca/localca/requests", params={"status": "pending"})
        assert answer.status_code == 200, answer.text
        views = {r["serial"]: r for r in answer.json()["result"]["value"]["requests"]}
    seen = views[attested["serial"]]
    assert seen["attestation_verified"] is True
    assert seen["attestation_subject"] == "CN=YubiKey PIV Attestation 9a"
    assert seen["attestation_issuer"] == "CN=Yubico PIV Attestation"
    assert views[plain["serial"]]["attestation_verified"] is False
    assert views[plain["serial"]]["attestation_subject"] == ""
