"""genkey=1 over real HTTP: the server makes the key, the owner downloads a PKCS#12 once."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from shared.db.models import AuditEntry, Token, TokenKey
from shared.events import CloudEvent, decode
from shared.messaging.base import Message
from shared.messaging.topology import EVENTS_EXCHANGE, KEYGEN_QUEUE
from tests.support.jobs import tapped
from tests.support.pki import make_csr, openssl_verify
from tests.support.stack import Stack

ALICE_PASSWORD = "Alice-Genkey-Pw-5c1f"
BOB_PASSWORD = "Bob-Genkey-Pw-9e2a"
PIN = "my PIN 4711"
_PEM = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.S)


# --- helpers --------------------------------------------------------------------------------


async def add_user(admin: httpx.AsyncClient, user: str, **extra: str) -> None:
    answer = await admin.post("/user/", json={"user": user, "realm": "corp", **extra})
    assert answer.status_code == 200, answer.text


async def genkey(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"type": "certificate", "genkey": 1, "ca": "localca", **fields}
    answer = await client.post("/token/init", json=body)
    assert answer.status_code == 200, answer.text
    detail: dict[str, Any] = answer.json()["detail"]
    return detail


def error_of(answer: httpx.Response) -> str:
    message: str = answer.json()["result"]["error"]["message"]
    return message


class Opened:
    """What ``openssl pkcs12 -info -nodes`` showed of a PKCS#12."""

    def __init__(self, stdout: str) -> None:
        blocks = [(m.group(1), m.group(0)) for m in _PEM.finditer(stdout)]
        [self.key_pem] = [pem for kind, pem in blocks if kind.endswith("PRIVATE KEY")]
        self.cert_pems = [pem for kind, pem in blocks if kind == "CERTIFICATE"]
        self.key = serialization.load_pem_private_key(self.key_pem.encode(), password=None)
        certs = [x509.load_pem_x509_certificate(p.encode()) for p in self.cert_pems]
        # The certificate of the key; the others are the CA chain.
        [self.cert] = [c for c in certs if c.public_key() == self.key.public_key()]
        self.chain = [c for c in certs if c is not self.cert]


def openssl_pkcs12(tmp_path: Path, b64: str, password: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "download.p12"
    path.write_bytes(base64.b64decode(b64))
    return subprocess.run(
        ["openssl", "pkcs12", "-info", "-nodes", "-in", str(path), "-passin", f"pass:{password}"],
        capture_output=True,
        text=True,
    )


async def open_checked(
    stack: Stack, tmp_path: Path, b64: str, password: str, login_name: str
) -> Opened:
    """Open the PKCS#12 with *password*; its certificate verifies and names *login_name*."""
    shown = openssl_pkcs12(tmp_path, b64, password)
    assert shown.returncode == 0, shown.stderr
    wrong = openssl_pkcs12(tmp_path, b64, password + "x")
    assert wrong.returncode != 0
    opened = Opened(shown.stdout)
    async with stack.client() as client:
        cacert = (await client.get("/ca/localca/cacert")).text
    verified = openssl_verify(tmp_path, cacert, opened.cert_pems[0])
    assert verified.returncode == 0, verified.stderr
    assert opened.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == login_name
    assert [c.subject for c in opened.chain] == [
        x509.load_pem_x509_certificate(cacert.encode()).subject
    ]
    return opened


def database_text(stack: Stack) -> str:
    """Every value of every table, as text."""
    path = stack.db.engine.url.database
    assert path
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        values = [repr(row) for table in tables for row in conn.execute(f'SELECT * FROM "{table}"')]
    return "\n".join(values)


async def key_row(stack: Stack, serial: str) -> TokenKey:
    async with stack.db.read() as session:
        row = await session.get(TokenKey, serial)
    assert row is not None
    return row


class Events:
    """Every token event, as a subscriber sees them."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.seen: list[CloudEvent] = []

    async def on_message(self, message: Message) -> None:
        self.bodies.append(message.body)
        self.seen.append(decode(message.body))


async def audited(stack: Stack, serial: str) -> int:
    """Audit rows of *serial*, once the audit log wrote them."""
    for _ in range(100):
        async with stack.db.read() as session:
            count = await session.scalar(
                select(func.count()).select_from(AuditEntry).where(AuditEntry.serial == serial)
            )
        if count:
            return count
        await asyncio.sleep(0.05)
    raise AssertionError(f"no audit row for {serial}")


# --- tests ----------------------------------------------------------------------------------


async def test_admin_genkey_gives_a_pkcs12_and_keeps_no_secret(
    stack: Stack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    events = Events()
    consumer = await stack.broker.subscribe(EVENTS_EXCHANGE, "token.#", events.on_message)
    async with stack.client(await stack.admin_token()) as admin:
        await add_user(admin, "alice", email="alice@example.org")
        detail = await genkey(admin, user="alice", realm="corp", keytype="ec-p256")
        serial, password = detail["serial"], detail["pkcs12_password"]
        assert detail["rollout_state"] == "enrolled", detail
        assert detail["keytype"] == "ec-p256" and len(password) >= 24
        opened = await open_checked(stack, tmp_path, detail["pkcs12"], password, "alice")
        assert isinstance(opened.key, ec.EllipticCurvePrivateKey)
        assert opened.key.curve.name == "secp256r1"
        issued = x509.load_pem_x509_certificate(detail["certificate"].encode())
        assert issued == opened.cert

        downloaded = await admin.get(f"/token/{serial}/pkcs12")
        assert downloaded.status_code == 200, downloaded.text
        value = downloaded.json()["result"]["value"]
        assert value == {"serial": serial, "pkcs12": detail["pkcs12"], "keytype": "ec-p256"}

        listed = (await admin.get("/token/")).json()
        [shown] = listed["result"]["value"]["tokens"]
        assert shown["info"]["genkey"] is True and shown["info"]["keytype"] == "ec-p256"
        assert shown["info"]["subject"] == "CN=alice"
        assert "CERTIFICATE REQUEST" in shown["info"]["request"]
        for secret in (password, "PRIVATE KEY", detail["pkcs12"][:40]):
            assert secret not in str(listed)
        # Asked for by serial, the token offers its PKCS#12 as a download (privacyIDEA's place).
        by_serial = (await admin.get("/token/", params={"serial": serial})).json()
        [shown] = by_serial["result"]["value"]["tokens"]
        assert shown["info"]["pkcs12"] == detail["pkcs12"]
        assert password not in str(by_serial) and "PRIVATE KEY" not in str(by_serial)

        row = await key_row(stack, serial)
        assert (row.downloads, row.password, row.keytype) == (3, "", "ec-p256")
        # The key lives only inside the sealed PKCS#12 now.
        assert not row.private_key and row.pkcs12 and row.deleted_at is None

        # A CSR token has no server-generated key.
        csr_token = await admin.post(
            "/token/init",
            json={"request": make_csr("alice"), "ca": "localca", "user": "alice@corp"},
        )
        none = await admin.get(f"/token/{csr_token.json()['detail']['serial']}/pkcs12")
        assert none.status_code == 404
        assert error_of(none).endswith("has no server-generated key")
        assert (await admin.get("/token/CRTNOSUCH/pkcs12")).status_code == 404

        await audited(stack, serial)
        dump = database_text(stack)
        assert serial in dump
        for secret in (password, "PRIVATE KEY", detail["pkcs12"][:40]):
            assert secret not in dump

        deleted = await admin.post(f"/token/{serial}/pkcs12/delete")
        assert deleted.status_code == 200, deleted.text
        again = await admin.post(f"/token/{serial}/pkcs12/delete")
        assert again.status_code == 200, again.text
        assert again.json()["detail"] == deleted.json()["detail"]
        gone = await admin.get(f"/token/{serial}/pkcs12")
        assert gone.status_code == 410
        assert error_of(gone) == f"serial: the PKCS#12 of token {serial} was deleted"
        row = await key_row(stack, serial)
        assert (row.private_key, row.password, row.pkcs12) == ("", "", "")
        assert row.deleted_at is not None
    await consumer.stop()

    assert [e.type for e in events.seen if e.subject == serial] == ["token_init"]
    for body in events.bodies:
        assert password.encode() not in body and b"PRIVATE KEY" not in body
        assert detail["pkcs12"][:40].encode() not in body
    assert caplog.records
    for record in caplog.records:
        assert password not in str(record.__dict__)


async def test_user_genkey_with_pin_keysize_and_other_users(stack: Stack, tmp_path: Path) -> None:
    async with stack.client(await stack.admin_token()) as admin:
        await add_user(admin, "alice", password=ALICE_PASSWORD)
        await add_user(admin, "bob", password=BOB_PASSWORD)
    alice = await stack.login("alice@corp", ALICE_PASSWORD)
    bob = await stack.login("bob@corp", BOB_PASSWORD)
    async with stack.client(alice) as client:
        refused: list[tuple[dict[str, Any], str]] = [
            ({"keysize": 1024}, "keysize: RSA keys below 2048 bits are refused"),
            ({"keysize": "1024"}, "keysize: RSA keys below 2048 bits are refused"),
            ({"keysize": "lots"}, "keysize: must be a number of bits"),
            ({"keysize": 2048, "keytype": "ec-p384"}, "keysize: 2048 bits disagrees"),
            ({"keytype": "dsa"}, "keytype: unknown key type 'dsa'"),
        ]
        for fields, message in refused:
            body = {"type": "certificate", "genkey": "1", "ca": "localca", **fields}
            answer = await client.post("/token/init", json=body)
            assert answer.status_code == 400, (fields, answer.text)
            assert error_of(answer).startswith(message), (fields, answer.text)
        assert (await client.get("/token/")).json()["result"]["value"]["count"] == 0

        with_pin = await genkey(client, keysize="3072", pin=PIN)
        assert with_pin["rollout_state"] == "enrolled", with_pin
        assert "pkcs12_password" not in with_pin and with_pin["keytype"] == "rsa-3072"
        opened = await open_checked(stack, tmp_path, with_pin["pkcs12"], PIN, "alice")
        assert isinstance(opened.key, rsa.RSAPrivateKey) and opened.key.key_size == 3072

        by_number = await genkey(client, keysize=2048, keytype="rsa")
        assert by_number["keytype"] == "rsa-2048" and by_number["rollout_state"] == "enrolled"
        p384 = await genkey(client, keytype="ec-p384", description="laptop")
        opened = await open_checked(
            stack, tmp_path, p384["pkcs12"], p384["pkcs12_password"], "alice"
        )
        assert isinstance(opened.key, ec.EllipticCurvePrivateKey)
        assert opened.key.curve.name == "secp384r1"
        assert opened.cert.signature_hash_algorithm is not None

        mine = await client.get(f"/token/{p384['serial']}/pkcs12")
        assert mine.status_code == 200, mine.text
        listed = await client.get("/token/")
        assert PIN not in listed.text and p384["pkcs12_password"] not in listed.text

    async with stack.client(bob) as client:
        for call in (
            client.get(f"/token/{with_pin['serial']}/pkcs12"),
            client.post(f"/token/{with_pin['serial']}/pkcs12/delete"),
        ):
            answer = await call
            assert answer.status_code == 403, answer.text
            assert "belongs to another user" in error_of(answer)
    assert (await key_row(stack, with_pin["serial"])).deleted_at is None
    dump = database_text(stack)
    assert PIN not in dump and p384["pkcs12_password"] not in dump


APPROVED = {"approval": "required", "validity_days": 30, "subject_components": ["email", "realm"]}


async def test_pending_genkey_gets_its_pkcs12_when_approved(stack: Stack, tmp_path: Path) -> None:
    async with stack.client(await stack.admin_token()) as admin:
        await add_user(admin, "alice", email="alice@example.org")
        made = await admin.post("/caconnector/localca/templates/approved", json=APPROVED)
        assert made.status_code == 200, made.text

        held = await genkey(admin, user="alice@corp", template="approved", keytype="ec-p256")
        serial = held["serial"]
        assert held["rollout_state"] == "pending" and held["request_id"], held
        assert "pkcs12" not in held and "certificate" not in held
        early = await admin.get(f"/token/{serial}/pkcs12")
        assert early.status_code == 409, early.text
        assert error_of(early) == f"serial: the certificate of token {serial} is not issued yet"
        row = await key_row(stack, serial)
        assert row.private_key and row.password and not row.pkcs12

        requests = await admin.get("/ca/localca/requests", params={"status": "pending"})
        [request] = requests.json()["result"]["value"]["requests"]
        # The template, not the CSR, adds the owner's e-mail and realm (when it signs).
        assert request["csr"]["subject"] == "CN=alice"

        approved = await admin.post(f"/ca/localca/requests/{held['request_id']}/approve")
        assert approved.status_code == 200, approved.text
        assert approved.json()["detail"]["rollout_state"] == "enrolled"
        downloaded = await admin.get(f"/token/{serial}/pkcs12")
        assert downloaded.status_code == 200, downloaded.text
        b64 = downloaded.json()["result"]["value"]["pkcs12"]
        opened = await open_checked(stack, tmp_path, b64, held["pkcs12_password"], "alice")
        emails = opened.cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)
        assert [a.value for a in emails] == ["alice@example.org"]
        units = opened.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
        assert [a.value for a in units] == ["corp"]
        assert (await key_row(stack, serial)).password == ""

        refused = await genkey(admin, user="alice@corp", template="approved", keytype="ec-p256")
        denied = await admin.post(
            f"/ca/localca/requests/{refused['request_id']}/deny", json={"reason": "no"}
        )
        assert denied.status_code == 200, denied.text
        row = await key_row(stack, refused["serial"])
        assert (row.private_key, row.password, row.pkcs12) == ("", "", "")
        late = await admin.get(f"/token/{refused['serial']}/pkcs12")
        assert late.status_code == 409
        assert error_of(late) == f"serial: token {refused['serial']} is denied; it has no PKCS#12"


async def test_enroll_policy_subject_and_delete_after_download(
    stack: Stack, tmp_path: Path
) -> None:
    async with stack.client(await stack.admin_token()) as admin:
        await add_user(admin, "alice", email="alice@example.org")
        await add_user(admin, "nomail")
        policy = await admin.post(
            "/policy/genkey-rules",
            json={
                "scope": "enroll",
                "action": {
                    "certificate_request_subject_component": "email realm",
                    "certificate_pkcs12_delete_after_download": True,
                },
                "realm": "corp",
            },
        )
        assert policy.status_code == 200, policy.text

        detail = await genkey(admin, user="alice@corp", keytype="rsa-4096")
        assert detail["rollout_state"] == "enrolled", detail
        opened = await open_checked(
            stack, tmp_path, detail["pkcs12"], detail["pkcs12_password"], "alice"
        )
        assert isinstance(opened.key, rsa.RSAPrivateKey) and opened.key.key_size == 4096
        subject = opened.cert.subject
        assert subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)[0].value == "alice@example.org"
        assert subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "corp"
        # The init answer was the one download allowed.
        gone = await admin.get(f"/token/{detail['serial']}/pkcs12")
        assert gone.status_code == 410, gone.text
        row = await key_row(stack, detail["serial"])
        assert (row.downloads, row.private_key, row.pkcs12) == (1, "", "")

        # Refused before anything is stored: the subject the policy asks for cannot be built.
        body = {"type": "certificate", "genkey": 1, "ca": "localca", "user": "nomail@corp"}
        refused = await admin.post("/token/init", json=body)
        assert refused.status_code == 400, refused.text
        assert error_of(refused).startswith("user: ") and "'nomail' has none" in error_of(refused)
        async with stack.db.read() as session:
            assert await session.scalar(select(func.count()).select_from(TokenKey)) == 1


# --- redelivery -----------------------------------------------------------------------------


async def test_redelivered_jobs_store_one_key_and_one_certificate(
    idle_worker: Stack, tmp_path: Path
) -> None:
    stack = idle_worker
    async with stack.client(await stack.admin_token()) as admin:
        async with tapped(stack.broker, KEYGEN_QUEUE) as jobs:
            await add_user(admin, "alice")
            detail = await genkey(admin, user="alice@corp", keytype="ec-p256")
            assert detail["rollout_state"] == "submitted", detail
            job = await jobs.next()
        assert jobs.waiting == []
        assert detail["pkcs12_password"].encode() not in job.body

        # Two deliveries at once, then a late third: one key, one certificate.
        handler = stack.worker.handler
        await asyncio.gather(handler(job), handler(job))
        async with stack.db.read() as session:
            token = await session.get(Token, detail["serial"])
            keys = await session.scalar(select(func.count()).select_from(TokenKey))
        assert token is not None and token.rollout_state == "enrolled"
        assert keys == 1
        first_csr, certificate = token.request, token.certificate
        await handler(job)
        async with stack.db.read() as session:
            token = await session.get(Token, detail["serial"])
        assert token is not None
        assert (token.request, token.certificate) == (first_csr, certificate)

        downloaded = await admin.get(f"/token/{detail['serial']}/pkcs12")
        assert downloaded.status_code == 200, downloaded.text
        b64 = downloaded.json()["result"]["value"]["pkcs12"]
    opened = await open_checked(stack, tmp_path, b64, detail["pkcs12_password"], "alice")
    assert opened.cert == x509.load_pem_x509_certificate(certificate.encode())
    csr = x509.load_pem_x509_csr(first_csr.encode())
    assert csr.public_key() == opened.key.public_key()


async def test_the_download_action_governs_the_pkcs12_in_the_init_answer_too(
    memory_stack: Stack,
) -> None:
    stack = memory_stack
    async with stack.client(await stack.admin_token()) as admin:
        await add_user(admin, "alice", password=ALICE_PASSWORD)
        # A user policy exists: users may do only what it grants (enroll, not download).
        granted = await admin.post(
            "/policy/enroll-only", json={"scope": "user", "action": "enrollCERTIFICATE"}
        )
        assert granted.status_code == 200, granted.text
        alice = await stack.login("alice@corp", ALICE_PASSWORD)
        async with stack.client(alice) as client:
            detail = await genkey(client, keytype="ec-p256")
            assert detail["rollout_state"] == "enrolled"
            assert "pkcs12" not in detail and detail["pkcs12_password"]
            refused = await client.get(f"/token/{detail['serial']}/pkcs12")
            assert refused.status_code == 403, refused.text
            assert error_of(refused).startswith("certificate_download_pkcs12: no user policy")
        assert (await key_row(stack, detail["serial"])).downloads == 0

        await admin.post(
            "/policy/enroll-only",
            json={"scope": "user", "action": "enrollCERTIFICATE, certificate_download_pkcs12"},
        )
        async with stack.client(alice) as client:
            allowed = await genkey(client, keytype="ec-p256")
            assert allowed["pkcs12"]
            fetched = await client.get(f"/token/{detail['serial']}/pkcs12")
            assert fetched.status_code == 200, fetched.text
