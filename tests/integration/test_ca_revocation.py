"""Revocation and deletion: the CRL lists revoked serials, OCSP answers good/revoked/unknown."""

from __future__ import annotations

import asyncio
import base64
import subprocess
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from sqlalchemy import select

from shared.db.models import CARequest
from tests.integration.test_ca_approval import APPROVED_TEMPLATE, Events, init, watch
from tests.support.pki import make_csr
from tests.support.stack import Stack


async def enroll(client: httpx.AsyncClient, cn: str) -> dict[str, Any]:
    answer = await client.post(
        "/token/init",
        json={"request": make_csr(cn), "ca": "localca", "user": "alice", "realm": "corp"},
    )
    detail: dict[str, Any] = answer.json()["detail"]
    assert detail["rollout_state"] == "enrolled", answer.text
    return detail


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)


async def ocsp_status(stack: Stack, cacert: Path, *target: str) -> str:
    # In a thread: the api answering it runs in this test's event loop.
    done = await asyncio.to_thread(
        run,
        "ocsp",
        "-issuer",
        str(cacert),
        *target,
        "-url",
        f"{stack.url}/ca/localca/ocsp",
        "-CAfile",
        str(cacert),
    )
    assert "Response verify OK" in done.stderr + done.stdout, done.stderr + done.stdout
    return done.stdout


async def test_revoke_lists_the_serial_and_ocsp_answers(stack: Stack, tmp_path: Path) -> None:
    token = await stack.admin_token()
    events = await watch(stack)
    async with stack.client(token) as client:
        assert (await client.post("/user/", json={"user": "alice", "realm": "corp"})).is_success
        revoked = await enroll(client, "revoked")
        kept = await enroll(client, "kept")
        answer = await client.post(
            "/token/revoke", json={"serial": revoked["serial"], "reason": "keyCompromise"}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["result"]["value"] == 1  # privacyIDEA's count of revoked tokens
        assert answer.json()["detail"]["rollout_state"] == "revoked"
        again = await client.post("/token/revoke", json={"serial": revoked["serial"]})
        assert again.status_code == 400  # privacyIDEA: the CA's error, code 503
        assert again.json()["result"]["error"]["code"] == 503
        nosuch = await client.post("/token/revoke", json={"serial": "CRT00000000"})
        assert nosuch.status_code == 404
        bad_reason = await client.post(
            "/token/revoke", json={"serial": kept["serial"], "reason": "because"}
        )
        assert bad_reason.status_code == 400
        assert "reason" in bad_reason.json()["result"]["error"]["message"]
        listed = (await client.get("/token/", params={"serial": revoked["serial"]})).json()
        shown = listed["result"]["value"]["tokens"][0]
        assert (shown["rollout_state"], shown["certtoken_state"]) == ("enrolled", "revoked")
        assert (shown["active"], shown["revoked"], shown["locked"]) == (False, True, True)

    # CRL, OCSP and the CA certificate are served without authentication.
    async with stack.client() as public:
        cacert_pem = (await public.get("/ca/localca/cacert")).text
        cacert_der = (await public.get("/ca/localca/cacert", params={"format": "der"})).content
        crl_der = (await public.get("/ca/localca/crl")).content
        crl_pem = (await public.get("/ca/localca/crl", params={"format": "pem"})).text
    assert x509.load_der_x509_certificate(cacert_der) == x509.load_pem_x509_certificate(
        cacert_pem.encode()
    )
    cacert = tmp_path / "ca.pem"
    cacert.write_text(cacert_pem)
    (tmp_path / "crl.der").write_bytes(crl_der)
    (tmp_path / "crl.pem").write_text(crl_pem)
    checked = run(
        "crl",
        "-inform",
        "DER",
        "-in",
        str(tmp_path / "crl.der"),
        "-CAfile",
        str(cacert),
        "-noout",
        "-text",
    )
    assert "verify OK" in checked.stderr + checked.stdout, checked.stderr
    serial = x509.load_pem_x509_certificate(revoked["certificate"].encode()).serial_number
    listed_serials = [
        int(line.split(":", 1)[1], 16)
        for line in checked.stdout.splitlines()
        if line.strip().startswith("Serial Number:")
    ]
    assert listed_serials == [serial], checked.stdout
    assert "Key Compromise" in checked.stdout
    pem_checked = run("crl", "-in", str(tmp_path / "crl.pem"), "-CAfile", str(cacert), "-noout")
    assert "verify OK" in pem_checked.stderr + pem_checked.stdout

    (tmp_path / "revoked.pem").write_text(revoked["certificate"])
    (tmp_path / "kept.pem").write_text(kept["certificate"])
    assert ": revoked" in await ocsp_status(stack, cacert, "-cert", str(tmp_path / "revoked.pem"))
    assert ": good" in await ocsp_status(stack, cacert, "-cert", str(tmp_path / "kept.pem"))
    assert ": unknown" in await ocsp_status(stack, cacert, "-serial", "0x1234567890ABCDEF")

    # The GET form: base64 DER request in the path.
    issuer = x509.load_pem_x509_certificate(cacert_pem.encode())
    cert = x509.load_pem_x509_certificate(kept["certificate"].encode())
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256()).build()
    encoded = base64.b64encode(request.public_bytes(serialization.Encoding.DER)).decode()
    async with stack.client() as public:
        got = await public.get(f"/ca/localca/ocsp/{encoded}")
        malformed = await public.post("/ca/localca/ocsp", content=b"not an OCSP request")
    response = ocsp.load_der_ocsp_response(got.content)
    assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert ocsp.load_der_ocsp_response(malformed.content).response_status == (
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    )

    revokes = await events.wait(revoked["serial"], "token_revoke")
    assert revokes[0].data["previous_rollout_state"] == "enrolled"
    assert revokes[0].data["revocation_reason"] == "keyCompromise"
    assert revokes[0].data["admin"] == "admin"


async def test_delete_revokes_first_and_withdraws_pending(stack: Stack, tmp_path: Path) -> None:
    token = await stack.admin_token()
    events: Events = await watch(stack)
    async with stack.client(token) as client:
        alice = {"user": "alice", "realm": "corp", "email": "alice@example.org"}
        assert (await client.post("/user/", json=alice)).is_success
        enrolled = await enroll(client, "gone")
        deleted = await client.delete(f"/token/{enrolled['serial']}")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json()["result"]["value"] == 1  # privacyIDEA's count of deleted tokens
        assert deleted.json()["detail"]["deleted"] is True
        listed = (await client.get("/token/", params={"serial": enrolled["serial"]})).json()
        assert listed["result"]["value"]["count"] == 0
        assert (await client.delete(f"/token/{enrolled['serial']}")).status_code == 404

        await client.post("/caconnector/localca/templates/approved", json=APPROVED_TEMPLATE)
        held = await init(client)
        assert held["rollout_state"] == "pending"
        withdrawn = await client.delete(f"/token/{held['serial']}")
        assert withdrawn.status_code == 200, withdrawn.text
        late = await client.post(f"/ca/localca/requests/{held['request_id']}/approve")
        assert late.status_code == 409
        crl_der = (await client.get("/ca/localca/crl")).content
    async with stack.db.read() as session:
        request = await session.scalar(select(CARequest).where(CARequest.id == held["request_id"]))
    assert request is not None and request.status == "withdrawn"

    crl = x509.load_der_x509_crl(crl_der)
    cert = x509.load_pem_x509_certificate(enrolled["certificate"].encode())
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.cessation_of_operation
    )
    kinds = [e.type for e in events.of(enrolled["serial"])]
    await events.wait(enrolled["serial"], "token_delete")
    kinds = [e.type for e in events.of(enrolled["serial"])]
    assert kinds == ["token_init", "token_revoke", "token_delete"]
    gone = (await events.wait(held["serial"], "token_delete"))[0]
    assert gone.data["previous_rollout_state"] == "pending"


async def test_a_ca_created_while_running_publishes_after_its_first_issue(
    stack: Stack,
) -> None:
    from services.ca_worker.ca_create import create_local_ca

    await create_local_ca(stack.settings, stack.db, "lateca")
    token = await stack.admin_token()
    async with stack.client(token) as client:
        assert (await client.post("/user/", json={"user": "alice", "realm": "corp"})).is_success
        assert (await client.get("/ca/lateca/crl")).status_code == 404
        answer = await client.post(
            "/token/init",
            json={"request": make_csr(), "ca": "lateca", "user": "alice", "realm": "corp"},
        )
        assert answer.json()["detail"]["rollout_state"] == "enrolled", answer.text
        for _ in range(200):
            published = await client.get("/ca/lateca/crl")
            if published.status_code == 200:
                break
            await asyncio.sleep(0.05)
        assert published.status_code == 200
        cacert = (await client.get("/ca/lateca/cacert")).text
    crl = x509.load_der_x509_crl(published.content)
    issuer = x509.load_pem_x509_certificate(cacert.encode())
    assert crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    assert len(crl) == 0
