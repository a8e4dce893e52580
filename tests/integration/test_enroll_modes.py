"""Enrollment modes over real HTTP: a CSR with an attestation, and an uploaded certificate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from shared.attestation import AttestationMode
from shared.db.models import OutboxMessage, Token
from tests.integration.test_ca_approval import watch
from tests.support.pki import make_csr
from tests.support.stack import Stack, prepare, running_stack, settings_for
from tests.unit.test_attestation import FIXTURES, make_cert

NOW = datetime.now(UTC)
DAY = timedelta(days=1)
_ROOT_KEY, _LEAF_KEY = (
    ec.generate_private_key(ec.SECP256R1()),
    ec.generate_private_key(ec.SECP256R1()),
)

YUBIKEY_CSR = (FIXTURES / "yubikey-slot9a.csr").read_text()
# Leaf first, then the chain file (root and intermediate): what a client sends along.
YUBIKEY_ATTESTATION = (FIXTURES / "yubikey-slot9a-attestation.pem").read_text() + (
    FIXTURES / "yubico-chain.pem"
).read_text()
UNRELATED = (FIXTURES / "unrelated-attestation.pem").read_text()


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _trust_dir(tmp_path: Path) -> Path:
    """The Yubico root and a test root, as a directory of PEM files."""
    trust = tmp_path / "attestation-cas"
    trust.mkdir()
    chain = x509.load_pem_x509_certificates((FIXTURES / "yubico-chain.pem").read_bytes())
    (trust / "yubico.pem").write_text("".join(_pem(c) for c in chain if c.subject == c.issuer))
    (trust / "test.pem").write_text(
        _pem(make_cert("Test Attestation Root", _ROOT_KEY, ca=True, path_length=1))
    )
    return trust


def _expired_attestation() -> str:
    """A test-root attestation of the _LEAF_KEY that expired yesterday."""
    leaf = make_cert(
        "Expired Attestation",
        _LEAF_KEY,
        "Test Attestation Root",
        _ROOT_KEY,
        not_before=NOW - 30 * DAY,
        not_after=NOW - DAY,
    )
    return _pem(leaf)


@pytest.fixture(
    params=[pytest.param(("memory", mode), id=f"memory-{mode.value}") for mode in AttestationMode]
    + [
        pytest.param(("amqp", mode), marks=pytest.mark.rabbitmq, id=f"amqp-{mode.value}")
        for mode in AttestationMode
    ]
)
async def attested(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    """The system with an attestation mode and trusted attestation CAs configured."""
    broker, mode = request.param
    overrides: dict[str, Any] = {
        "require_attestation": mode,
        "attestation_ca_path": _trust_dir(tmp_path),
    }
    if broker == "amqp":
        overrides["amqp_url"] = request.getfixturevalue("amqp_url")
    settings = settings_for(tmp_path / "data", **overrides)
    await prepare(settings)
    async with running_stack(settings) as running:
        yield running


async def _add_user(client: httpx.AsyncClient) -> None:
    answer = await client.post("/user/", json={"user": "alice", "realm": "corp"})
    assert answer.status_code == 200, answer.text


async def _init(client: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    body = {"type": "certificate", "user": "alice", "realm": "corp", **fields}
    return await client.post("/token/init", json=body)


async def _counts(stack: Stack) -> tuple[int, int]:
    async with stack.db.read() as session:
        tokens = await session.scalar(select(func.count()).select_from(Token))
        outbox = await session.scalar(select(func.count()).select_from(OutboxMessage))
    return tokens or 0, outbox or 0


async def _info(client: httpx.AsyncClient, serial: str) -> dict[str, Any]:
    listed = (await client.get("/token/", params={"serial": serial})).json()
    info: dict[str, Any] = listed["result"]["value"]["tokens"][0]["info"]
    return info


def _error(answer: httpx.Response) -> str:
    assert answer.status_code == 400, answer.text
    message: str = answer.json()["result"]["error"]["message"]
    return message


async def test_attestation_modes(attested: Stack) -> None:
    mode = attested.settings.require_attestation
    token = await attested.admin_token()
    async with attested.client(token) as client:
        await _add_user(client)
        request = {"request": YUBIKEY_CSR, "ca": "localca"}

        # The real YubiKey attestation with its chain: enrolled in every mode.
        passed = await _init(client, **request, attestation=YUBIKEY_ATTESTATION)
        assert passed.status_code == 200, passed.text
        assert passed.json()["detail"]["rollout_state"] == "enrolled"
        info = await _info(client, passed.json()["detail"]["serial"])
        if mode == AttestationMode.IGNORE:
            assert info["attestation_verified"] is False
            assert "attestation_subject" not in info
        else:
            assert info["attestation_verified"] is True
            assert info["attestation_subject"] == "CN=YubiKey PIV Attestation 9a"
            assert info["attestation_issuer"] == "CN=Yubico PIV Attestation"

        before = await _counts(attested)
        missing = await _init(client, **request)
        mismatch = await _init(client, **request, attestation=UNRELATED)
        # Only the leaf: no path to the trusted Yubico root without the intermediate.
        leaf_only = (FIXTURES / "yubikey-slot9a-attestation.pem").read_text()
        untrusted = await _init(client, **request, attestation=leaf_only)
        not_a_cert = await _init(client, **request, attestation="not a certificate")
        expired = await _init(
            client,
            request=make_csr("expired", key=_LEAF_KEY),
            ca="localca",
            attestation=_expired_attestation(),
        )

        if mode == AttestationMode.IGNORE:
            for answer in (missing, mismatch, untrusted, not_a_cert, expired):
                assert answer.status_code == 200, answer.text
                assert answer.json()["detail"]["rollout_state"] == "enrolled"
            return
        assert _error(mismatch).startswith("attestation: key mismatch")
        assert _error(untrusted).startswith("attestation: untrusted chain")
        assert _error(not_a_cert).startswith("attestation: not a PEM-encoded X.509 certificate")
        assert _error(expired).startswith("attestation: expired")
        if mode == AttestationMode.VERIFY:
            assert missing.status_code == 200, missing.text
            assert missing.json()["detail"]["rollout_state"] == "enrolled"
            info = await _info(client, missing.json()["detail"]["serial"])
            assert info["attestation_verified"] is False
            assert (await _counts(attested))[0] == before[0] + 1
        else:
            assert _error(missing).startswith("attestation: missing")
            # Token and job are stored together; the outbox itself shrinks as the relay sends.
            assert (await _counts(attested))[0] == before[0]


def _uploadable(**dates: Any) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return _pem(make_cert("Uploaded", key, "Some Other CA", _ROOT_KEY, **dates))


async def test_uploaded_certificate_is_enrolled_at_once_and_revocable(stack: Stack) -> None:
    events = await watch(stack)
    token = await stack.admin_token()
    certificate = _uploadable()
    async with stack.client(token) as client:
        await _add_user(client)
        answer = await _init(client, certificate=certificate, description="laptop")
        assert answer.status_code == 200, answer.text
        detail = answer.json()["detail"]
        assert detail["rollout_state"] == "enrolled"
        assert detail["certificate"] == certificate
        serial = detail["serial"]
        init = await events.wait(serial, "token_init")
        assert init[0].data["rollout_state"] == "enrolled"
        assert init[0].data["certificate"] == certificate
        assert init[0].data["certificate_subject"] == "CN=Uploaded"
        assert init[0].data["admin"] == "admin"

        info = await _info(client, serial)
        assert info["certificate"] == certificate
        assert info["certificate_issuer"] == "CN=Some Other CA"
        assert info["certificate_subject"] == "CN=Uploaded"
        assert info["CA"] == ""
        assert info["description"] == "laptop"
        async with stack.db.read() as session:
            stored = await session.get(Token, serial)
        assert stored is not None and stored.rollout_state == "enrolled"

        revoked = await client.post(
            "/token/revoke", json={"serial": serial, "reason": "keyCompromise"}
        )
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["detail"]["rollout_state"] == "revoked"
        assert revoked.json()["detail"]["revocation_reason"] == "keyCompromise"
        await events.wait(serial, "token_revoke")
        listed = (await client.get("/token/", params={"serial": serial})).json()
        shown = listed["result"]["value"]["tokens"][0]
        assert (shown["rollout_state"], shown["certtoken_state"]) == ("enrolled", "revoked")
        assert (shown["active"], shown["revoked"], shown["locked"]) == (False, True, True)
        assert shown["info"]["revocation_reason"] == "keyCompromise"

        uploaded = await _init(client, certificate=_uploadable())
        deleted = await client.delete(f"/token/{uploaded.json()['detail']['serial']}")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json()["detail"]["deleted"] is True
        gone = await client.get("/token/", params={"serial": uploaded.json()["detail"]["serial"]})
        assert gone.json()["result"]["value"]["count"] == 0
    assert events.consumer is not None
    await events.consumer.stop()


async def test_uploads_that_are_refused(stack: Stack) -> None:
    token = await stack.admin_token()
    async with stack.client(token) as client:
        await _add_user(client)
        before = await _counts(stack)
        expired = await _init(client, certificate=_uploadable(not_after=NOW - DAY))
        assert _error(expired).startswith("certificate: expired")
        early = await _init(client, certificate=_uploadable(not_before=NOW + DAY))
        assert _error(early).startswith("certificate: not yet valid")
        garbage = await _init(client, certificate="-----BEGIN CERTIFICATE-----\nAAAA\n")
        assert _error(garbage).startswith("certificate: not a PEM-encoded X.509 certificate")
        csr = await _init(client, certificate=YUBIKEY_CSR)
        assert _error(csr).startswith("certificate: not a PEM")
        # With a certificate, a CSR is its proof of possession: another key's CSR fails it.
        both = await _init(client, certificate=_uploadable(), request=YUBIKEY_CSR, ca="localca")
        assert _error(both).startswith("request: proof of possession failed")
        genkey = await _init(client, certificate=_uploadable(), genkey=1, ca="localca")
        assert _error(genkey).startswith("genkey: give only one of certificate, genkey")
        nobody = await _init(client, certificate=_uploadable(), user="mallory")
        assert _error(nobody).startswith("user: unknown user")
        assert await _counts(stack) == before


async def test_a_user_uploads_and_attests_for_themselves(memory_stack: Stack) -> None:
    password = "alice-password-1"
    async with memory_stack.client(await memory_stack.admin_token()) as admin:
        created = await admin.post(
            "/user/", json={"user": "alice", "realm": "corp", "password": password}
        )
        assert created.status_code == 200, created.text
        granted = await admin.post(
            "/policy/self-service",
            json={"scope": "user", "action": "enrollCERTIFICATE, revoke", "realm": "corp"},
        )
        assert granted.status_code == 200, granted.text
    alice = await memory_stack.login("alice@corp", password)
    async with memory_stack.client(alice) as client:
        certificate = _uploadable()
        uploaded = await client.post("/token/init", json={"certificate": certificate})
        assert uploaded.status_code == 200, uploaded.text
        serial = uploaded.json()["detail"]["serial"]
        assert uploaded.json()["detail"]["rollout_state"] == "enrolled"
        info = await _info(client, serial)
        assert info["enrolled_by"] == "user:alice" and info["certificate"] == certificate
        revoked = await client.post("/token/revoke", json={"serial": serial})
        assert revoked.json()["detail"]["rollout_state"] == "revoked", revoked.text

        # A CSR with the real YubiKey attestation: no trust configured, so not verified.
        attested = await client.post(
            "/token/init",
            json={"request": YUBIKEY_CSR, "ca": "localca", "attestation": YUBIKEY_ATTESTATION},
        )
        assert attested.json()["detail"]["rollout_state"] == "enrolled", attested.text
        info = await _info(client, attested.json()["detail"]["serial"])
        assert info["attestation_verified"] is False
