"""Enrollment over real HTTP: the whole path, bad input, authentication, queries."""

from __future__ import annotations

from pathlib import Path

import jwt
from sqlalchemy import func, select

from shared.db.models import OutboxMessage, Token
from tests.support.pki import broken_signature, make_csr, openssl_csr, openssl_verify
from tests.support.stack import Stack


async def _add_user(stack: Stack, token: str, user: str = "alice", realm: str = "corp") -> None:
    async with stack.client(token) as client:
        answer = await client.post(
            "/user/", json={"user": user, "realm": realm, "email": f"{user}@example.org"}
        )
    assert answer.status_code == 200, answer.text


async def _counts(stack: Stack) -> tuple[int, int]:
    async with stack.db.read() as session:
        tokens = await session.scalar(select(func.count()).select_from(Token))
        outbox = await session.scalar(select(func.count()).select_from(OutboxMessage))
    return tokens or 0, outbox or 0


async def test_openssl_csr_is_enrolled_and_verifies(stack: Stack, tmp_path: Path) -> None:
    token = await stack.admin_token()
    await _add_user(stack, token)
    csr = openssl_csr(tmp_path)
    async with stack.client(token) as client:
        answer = await client.post(
            "/token/init",
            json={
                "type": "certificate",
                "request": csr,
                "ca": "localca",
                "user": "alice",
                "realm": "corp",
            },
        )
        body = answer.json()
        assert answer.status_code == 200, body
        assert body["result"] == {"status": True, "value": True}
        assert body["jsonrpc"] == "2.0" and body["version"].startswith("certtoken ")
        detail = body["detail"]
        assert detail["rollout_state"] == "enrolled"
        assert detail["serial"].startswith("CRT") and len(detail["serial"]) == 11
        [connector] = (await client.get("/caconnector/localca")).json()["result"]["value"]
    verified = openssl_verify(tmp_path, connector["cacert"], detail["certificate"])
    assert verified.returncode == 0, verified.stderr
    assert "cakey" not in connector["data"] or connector["data"]["cakey"] == "***"
    assert "PRIVATE KEY" not in str(connector)


async def test_token_list_shows_the_certificate(stack: Stack) -> None:
    token = await stack.admin_token()
    await _add_user(stack, token)
    await _add_user(stack, token, "bob")
    async with stack.client(token) as client:
        for user in ("alice", "alice", "bob"):
            answer = await client.post(
                "/token/init",
                data={
                    "type": "certificate",
                    "request": make_csr(user),
                    "ca": "localca",
                    "user": user,
                    "realm": "corp",
                },
            )
            assert answer.json()["detail"]["rollout_state"] == "enrolled"
        mine = (await client.get("/token/", params={"user": "alice"})).json()["result"]["value"]
        assert mine["count"] == 2
        first = mine["tokens"][0]
        assert first["tokentype"] == "certificate" and first["username"] == "alice"
        assert first["user_realm"] == "corp" and first["rollout_state"] == "enrolled"
        assert first["info"]["CA"] == "localca"
        assert "BEGIN CERTIFICATE" in first["info"]["certificate"]
        paged = (await client.get("/token/", params={"pagesize": 2})).json()["result"]["value"]
        assert (paged["count"], paged["current"], paged["next"], paged["prev"]) == (3, 1, 2, None)
        page2 = (await client.get("/token/", params={"pagesize": 2, "page": 2})).json()
        assert len(page2["result"]["value"]["tokens"]) == 1
        assert page2["result"]["value"]["prev"] == 1
        by_state = await client.get("/token/", params={"rollout_state": "pending"})
        assert by_state.json()["result"]["value"]["count"] == 0
        bad_state = await client.get("/token/", params={"rollout_state": "bogus"})
        assert bad_state.status_code == 400
        assert "rollout_state" in bad_state.json()["result"]["error"]["message"]


async def test_bad_requests_are_400_and_change_nothing(stack: Stack) -> None:
    token = await stack.admin_token()
    await _add_user(stack, token)
    good = {
        "type": "certificate",
        "request": make_csr(),
        "ca": "localca",
        "user": "alice",
        "realm": "corp",
    }
    cases = [
        ({"request": "-----BEGIN CERTIFICATE REQUEST-----\nnope\n"}, "request"),
        ({"request": broken_signature(make_csr())}, "signature"),
        ({"ca": "nosuchca"}, "ca"),
        ({"user": None}, "user"),
        ({"user": "mallory"}, "mallory"),
        ({"type": "hotp"}, "type"),
        ({"request": None}, "request"),
    ]
    async with stack.client(token) as client:
        for change, word in cases:
            body = {k: v for k, v in {**good, **change}.items() if v is not None}
            answer = await client.post("/token/init", json=body)
            payload = answer.json()
            assert answer.status_code == 400, (change, payload)
            assert payload["result"]["status"] is False
            assert word in payload["result"]["error"]["message"], (change, payload)
        not_json = await client.post(
            "/token/init", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 400
    assert await _counts(stack) == (0, 0)


async def test_authentication_is_required(stack: Stack) -> None:
    token = await stack.admin_token()
    forged = jwt.encode(
        {"sub": "admin", "role": "admin", "exp": 9999999999, "iss": "certtoken"},
        "guessed-secret-of-thirty-two-bytes-or-more",
        algorithm="HS256",
    )
    async with stack.client() as client:
        for path in ("/token/", "/caconnector/", "/user/"):
            assert (await client.get(path)).status_code == 401
            answer = await client.get(path, headers={"Authorization": forged})
            assert answer.status_code == 401
            assert answer.json()["result"]["error"]["message"].startswith("Authorization")
            assert (await client.get(path, headers={"Authorization": token})).status_code == 200
            bearer = {"Authorization": f"Bearer {token}"}
            assert (await client.get(path, headers=bearer)).status_code == 200
        init = await client.post("/token/init", json={"request": make_csr()})
        assert init.status_code == 401
        wrong = await client.post("/auth", json={"username": "admin", "password": "nope-nope"})
        assert wrong.status_code == 401
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["broker"] is True
        assert (await client.get("/metrics")).status_code == 200
        assert "/token/init" in (await client.get("/openapi.json")).json()["paths"]
    assert await _counts(stack) == (0, 0)


async def test_users_are_managed(stack: Stack) -> None:
    token = await stack.admin_token()
    await _add_user(stack, token)
    async with stack.client(token) as client:
        duplicate = await client.post("/user/", json={"user": "alice", "realm": "corp"})
        assert duplicate.status_code == 409
        invalid = await client.post(
            "/user/", json={"user": "bob", "realm": "corp", "email": "not-an-address"}
        )
        assert (
            invalid.status_code == 400 and "email" in invalid.json()["result"]["error"]["message"]
        )
        users = (await client.get("/user/", params={"realm": "corp"})).json()["result"]["value"]
        assert [u["username"] for u in users] == ["alice"]
        assert "password_hash" not in users[0]
        assert (await client.delete("/user/corp/alice")).status_code == 200
        assert (await client.delete("/user/corp/alice")).status_code == 404


async def test_correlation_id_is_echoed(stack: Stack) -> None:
    async with stack.client() as client:
        answer = await client.get("/healthz", headers={"X-Correlation-ID": "abc-123"})
    assert answer.headers["x-correlation-id"] == "abc-123"


async def test_a_request_the_ca_refuses_ends_failed_with_the_reason(stack: Stack) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    token = await stack.admin_token()
    await _add_user(stack, token)
    # The CSR and its names pass, but the CA cannot give an EC key this template's key usage.
    ec_csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    async with stack.client(token) as client:
        made = await client.post(
            "/caconnector/localca/templates/rsaonly", json={"key_usage": ["keyEncipherment"]}
        )
        assert made.status_code == 200, made.text
        answer = await client.post(
            "/token/init",
            json={
                "request": ec_csr,
                "ca": "localca",
                "template": "rsaonly",
                "user": "alice",
                "realm": "corp",
            },
        )
        detail = answer.json()["detail"]
        assert answer.status_code == 200
        assert detail["rollout_state"] == "failed"
        assert "an EC key cannot serve the key usages" in detail["reason"]
        listed = (await client.get("/token/", params={"serial": detail["serial"]})).json()
        info = listed["result"]["value"]["tokens"][0]["info"]
        assert info["reason"] == detail["reason"]
        assert "certificate" not in info
        # The worker goes on: the next good request is enrolled.
        good = await client.post(
            "/token/init",
            json={"request": make_csr(), "ca": "localca", "user": "alice", "realm": "corp"},
        )
        assert good.json()["detail"]["rollout_state"] == "enrolled"
    assert await stack.broker.queue_depth("certtoken.ca_worker.parking") == 0
