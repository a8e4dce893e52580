"""Uploaded certificates: no CA certificates, one token per certificate, proof of the key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, pool, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import migrate
from shared.db.models import Token
from shared.pki import certificate_id
from tests.support.pki import broken_signature, make_csr
from tests.support.stack import Stack, prepare, running_stack, settings_for

NOW = datetime.now(UTC)
_ISSUER_KEY = ec.generate_private_key(ec.SECP256R1())
HELD = "certificate: another token holds this certificate already"
PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-1"}


@pytest.fixture
async def sqlite_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """The system on SQLite and the in-process broker."""
    async with _stack(tmp_path) as running:
        yield running


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def any_db_stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    """The system on SQLite and on PostgreSQL."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else ""
    async with _stack(tmp_path, database_url=url) as running:
        yield running


@asynccontextmanager
async def _stack(tmp_path: Path, **overrides: Any) -> AsyncIterator[Stack]:
    """A running system with users alice and bob in realm corp."""
    settings = settings_for(tmp_path / "data", **overrides)
    await prepare(settings)
    async with running_stack(settings) as running:
        async with running.client(await running.admin_token()) as admin:
            for name, password in PASSWORDS.items():
                body = {"user": name, "realm": "corp", "password": password}
                made = await admin.post("/user/", json=body)
                assert made.status_code == 200, made.text
        yield running


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _cert(
    key: ec.EllipticCurvePrivateKey | None = None,
    *extensions: tuple[x509.ExtensionType, bool],
    self_signed: bool = False,
) -> tuple[str, ec.EllipticCurvePrivateKey]:
    """A certificate (PEM) for *key* (a new one by default) by a foreign CA, and the key."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Uploaded")])
    issuer = (
        subject
        if self_signed
        else x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Some Other CA")])
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    signer = key if self_signed else _ISSUER_KEY
    return _pem(builder.sign(signer, hashes.SHA256())), key


def _key_usage(**flags: bool) -> x509.KeyUsage:
    names = [
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    ]
    return x509.KeyUsage(**{name: flags.get(name, False) for name in names})


async def _as(stack: Stack, who: str) -> httpx.AsyncClient:
    if who == "admin":
        return stack.client(await stack.admin_token())
    return stack.client(await stack.login(f"{who}@corp", PASSWORDS[who]))


async def _upload(client: httpx.AsyncClient, owner: str, **fields: Any) -> httpx.Response:
    body = {"type": "certificate", "user": owner, "realm": "corp", **fields}
    return await client.post("/token/init", json=body)


def _error(answer: httpx.Response) -> str:
    assert answer.status_code == 400, answer.text
    message: str = answer.json()["result"]["error"]["message"]
    return message


async def _token_count(stack: Stack) -> int:
    async with stack.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(Token)) or 0)


async def _stored_identity(stack: Stack, serial: str) -> str | None:
    async with stack.db.read() as session:
        token = await session.get(Token, serial)
    assert token is not None
    return token.certificate_id


# --- CA certificates ------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["bob", "admin"])
async def test_ca_certificates_are_refused(sqlite_stack: Stack, who: str) -> None:
    async with await _as(sqlite_stack, "admin") as admin:
        own_ca = (await admin.get("/ca/localca/cacert")).text
    ca_flag, _ = _cert(None, (x509.BasicConstraints(ca=True, path_length=None), True))
    cert_sign, _ = _cert(None, (_key_usage(key_cert_sign=True, digital_signature=True), True))
    self_signed_root, _ = _cert(
        None, (x509.BasicConstraints(ca=True, path_length=0), True), self_signed=True
    )
    before = await _token_count(sqlite_stack)
    async with await _as(sqlite_stack, who) as client:
        for pem, reason in (
            (own_ca, "basicConstraints cA=TRUE"),
            (ca_flag, "basicConstraints cA=TRUE"),
            (self_signed_root, "basicConstraints cA=TRUE"),
            (cert_sign, "keyUsage keyCertSign"),
        ):
            message = _error(await _upload(client, "bob", certificate=pem))
            assert message == (
                f"certificate: a CA certificate ({reason}) cannot be a token's certificate"
            )
        # An end-entity certificate with explicit cA=FALSE and signing usages is fine.
        leaf, _ = _cert(
            None,
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (_key_usage(digital_signature=True), True),
        )
        accepted = await _upload(client, "bob", certificate=leaf)
        assert accepted.status_code == 200, accepted.text
    assert await _token_count(sqlite_stack) == before + 1


# --- one token per certificate --------------------------------------------------------------


@pytest.mark.parametrize("who", ["bob", "admin"])
async def test_a_certificate_certtoken_issued_cannot_be_taken_by_upload(
    sqlite_stack: Stack, who: str
) -> None:
    async with await _as(sqlite_stack, "alice") as alice:
        enrolled = await alice.post(
            "/token/init",
            json={"type": "certificate", "request": make_csr("alice"), "ca": "localca"},
        )
    assert enrolled.status_code == 200, enrolled.text
    detail = enrolled.json()["detail"]
    assert detail["rollout_state"] == "enrolled"
    issued = x509.load_pem_x509_certificate(detail["certificate"].encode())
    assert await _stored_identity(sqlite_stack, detail["serial"]) == certificate_id(issued)
    before = await _token_count(sqlite_stack)
    async with await _as(sqlite_stack, who) as client:
        taken = await _upload(client, "bob", certificate=detail["certificate"])
        assert _error(taken).startswith(HELD)
        # Not for its own owner either: it already is a token.
        owner = "alice" if who == "admin" else "bob"
        again = await _upload(client, owner, certificate=detail["certificate"])
        assert _error(again).startswith(HELD)
    assert await _token_count(sqlite_stack) == before


async def test_an_approved_certificate_is_held_too(sqlite_stack: Stack) -> None:
    async with await _as(sqlite_stack, "admin") as admin:
        made = await admin.post(
            "/caconnector/localca/templates/held", json={"approval": "required"}
        )
        assert made.status_code == 200, made.text
        init = await admin.post(
            "/token/init",
            json={
                "type": "certificate",
                "request": make_csr("alice"),
                "ca": "localca",
                "template": "held",
                "user": "alice",
                "realm": "corp",
            },
        )
        assert init.json()["detail"]["rollout_state"] == "pending", init.text
        assert await _stored_identity(sqlite_stack, init.json()["detail"]["serial"]) is None
        request_id = init.json()["detail"]["request_id"]
        approved = await admin.post(f"/ca/localca/requests/{request_id}/approve")
        assert approved.status_code == 200, approved.text
        pem = approved.json()["detail"]["certificate"]
        issued = x509.load_pem_x509_certificate(pem.encode())
        serial = init.json()["detail"]["serial"]
        assert await _stored_identity(sqlite_stack, serial) == certificate_id(issued)
        assert _error(await _upload(admin, "bob", certificate=pem)).startswith(HELD)


@pytest.mark.parametrize("who", ["bob", "admin"])
async def test_an_uploaded_certificate_is_held_until_its_token_is_deleted(
    sqlite_stack: Stack, who: str
) -> None:
    pem, _ = _cert()
    async with await _as(sqlite_stack, who) as client:
        first = await _upload(client, "bob", certificate=pem)
        assert first.status_code == 200, first.text
        serial = first.json()["detail"]["serial"]
        assert await _stored_identity(sqlite_stack, serial) == certificate_id(
            x509.load_pem_x509_certificate(pem.encode())
        )
        assert _error(await _upload(client, "bob", certificate=pem)).startswith(HELD)
    async with await _as(sqlite_stack, "alice") as alice:
        assert _error(await _upload(alice, "alice", certificate=pem)).startswith(HELD)
    async with await _as(sqlite_stack, "admin") as admin:
        deleted = await admin.delete(f"/token/{serial}")
        assert deleted.status_code == 200, deleted.text
        # A deleted token holds nothing: the certificate may be uploaded again.
        again = await _upload(admin, "alice", certificate=pem)
        assert again.status_code == 200, again.text


async def test_concurrent_uploads_of_one_certificate_have_one_winner(
    any_db_stack: Stack,
) -> None:
    pem, _ = _cert()
    before = await _token_count(any_db_stack)
    async with await _as(any_db_stack, "admin") as admin:
        answers = await asyncio.gather(
            *(_upload(admin, owner, certificate=pem) for owner in ["alice", "bob"] * 6)
        )
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [400] * 11, [a.text for a in answers]
    assert all(_error(a).startswith(HELD) for a in answers if a.status_code == 400)
    assert await _token_count(any_db_stack) == before + 1


# --- proof of possession --------------------------------------------------------------------


async def _require_proof(stack: Stack) -> None:
    async with await _as(stack, "admin") as admin:
        made = await admin.post(
            "/policy/upload-proof",
            json={"scope": "enroll", "action": "certificate_upload_require_proof", "realm": "corp"},
        )
        assert made.status_code == 200, made.text


def _csr(key: ec.EllipticCurvePrivateKey) -> str:
    return make_csr("whatever", key)


async def test_the_proof_policy_makes_a_user_prove_the_key(sqlite_stack: Stack) -> None:
    await _require_proof(sqlite_stack)
    pem, key = _cert()
    other = ec.generate_private_key(ec.SECP256R1())
    before = await _token_count(sqlite_stack)
    async with await _as(sqlite_stack, "bob") as bob:
        missing = _error(await _upload(bob, "bob", certificate=pem))
        assert missing.startswith("request: required with 'certificate'")
        assert "certificate_upload_require_proof" in missing
        wrong = _error(await _upload(bob, "bob", certificate=pem, request=_csr(other)))
        assert wrong == (
            "request: proof of possession failed: the CSR's key is not the certificate's key"
        )
        forged = _error(
            await _upload(bob, "bob", certificate=pem, request=broken_signature(_csr(key)))
        )
        assert forged.startswith("request: the CSR signature does not verify")
        garbage = _error(await _upload(bob, "bob", certificate=pem, request="not a CSR"))
        assert garbage.startswith("request: not a PEM-encoded PKCS#10")
        assert await _token_count(sqlite_stack) == before
        proven = await _upload(bob, "bob", certificate=pem, request=_csr(key))
        assert proven.status_code == 200, proven.text
        serial = proven.json()["detail"]["serial"]
        listed = (await bob.get("/token/", params={"serial": serial})).json()
    info = listed["result"]["value"]["tokens"][0]["info"]
    assert info["key_possession_proven"] is True
    assert await _token_count(sqlite_stack) == before + 1


async def test_the_proof_policy_binds_users_not_admins(sqlite_stack: Stack) -> None:
    await _require_proof(sqlite_stack)
    pem, _ = _cert()
    async with await _as(sqlite_stack, "admin") as admin:
        imported = await _upload(admin, "bob", certificate=pem)
        assert imported.status_code == 200, imported.text
        # A proof an admin sends along is still checked.
        other, _ = _cert()
        stray = ec.generate_private_key(ec.SECP256R1())
        wrong = _error(await _upload(admin, "bob", certificate=other, request=_csr(stray)))
        assert wrong.startswith("request: proof of possession failed")


async def test_without_the_policy_a_proof_is_optional_but_checked(sqlite_stack: Stack) -> None:
    pem, key = _cert()
    other_pem, _ = _cert()
    async with await _as(sqlite_stack, "alice") as alice:
        plain = await _upload(alice, "alice", certificate=other_pem)
        assert plain.status_code == 200, plain.text
        stray = ec.generate_private_key(ec.SECP256R1())
        wrong = _error(await _upload(alice, "alice", certificate=pem, request=_csr(stray)))
        assert wrong.startswith("request: proof of possession failed")
        proven = await _upload(alice, "alice", certificate=pem, request=_csr(key))
        assert proven.status_code == 200, proven.text


async def test_the_proof_policy_value_is_checked(sqlite_stack: Stack) -> None:
    async with await _as(sqlite_stack, "admin") as admin:
        bad = await admin.post(
            "/policy/upload-proof",
            json={"scope": "enroll", "action": "certificate_upload_require_proof=perhaps"},
        )
        assert _error(bad).startswith("action: certificate_upload_require_proof must be true")


# --- migration ------------------------------------------------------------------------------


async def test_migration_0006_backfills_certificate_ids(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    await migrate.upgrade(url, "0005")
    held, _ = _cert()
    rows = [
        ("CRT01", held, "2026-01-01 00:00:00"),
        ("CRT02", held, "2026-01-02 00:00:00"),  # the same certificate, later: left without
        ("CRT03", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "2026-01-03"),
        ("CRT04", "", "2026-01-04 00:00:00"),
    ]
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.begin() as conn:
            for serial, certificate, created in rows:
                await conn.execute(
                    text(
                        "INSERT INTO token (serial, tokentype, username, realm, rollout_state,"
                        " ca, template, request, certificate, info, created_at, updated_at)"
                        " VALUES (:serial, 'certificate', 'alice', 'corp', 'enrolled', '', '',"
                        " '', :certificate, '{}', :created, :created)"
                    ),
                    {"serial": serial, "certificate": certificate, "created": created},
                )
        await migrate.upgrade(url)
        async with engine.connect() as conn:
            result = await conn.execute(text("SELECT serial, certificate_id FROM token"))
            found: dict[str, str | None] = {serial: cid for serial, cid in result.all()}
    finally:
        await engine.dispose()
    expected = certificate_id(x509.load_pem_x509_certificate(held.encode()))
    assert found == {"CRT01": expected, "CRT02": None, "CRT03": None, "CRT04": None}
