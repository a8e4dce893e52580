"""privacyIDEA's login as its clients use it: PI-Authorization, the /auth answer, signed answers."""

from __future__ import annotations

import json
import stat
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from services import __version__
from services.api.signing import KEY_FILE_NAME
from shared.security import Identity, issue_token
from tests.support.stack import Stack

PASSWORD = "Alice-Login-Pw-7c3f"

# privacyIDEA 3.14's login answer: result.value's UI keys and their JSON types (from the
# reference at 127.0.0.1:5151), besides token, role, username, realm, rights and menus.
PI_UI_KEYS: dict[str, type | None] = {
    "admin_dashboard": bool,
    "audit_page_size": int,
    "auth": bool,
    "container_wizard": dict,
    "default_container_type": str,
    "default_tokentype": str,
    "deletion_confirmation": bool,
    "dialog_no_token": bool,
    "hide_buttons": bool,
    "hide_welcome": bool,
    "log_level": int,
    "logout_redirect_url": str,
    "logout_time": int,
    "policy_template_url": str,
    "qr_image_android": None,
    "qr_image_custom": None,
    "qr_image_ios": None,
    "require_description": list,
    "rss_age": int,
    "search_on_enter": bool,
    "session_persistence": str,
    "show_node": str,
    "show_seed": bool,
    "subscription_status": int,
    "timeout_action": str,
    "token_page_size": int,
    "token_rollover": dict,
    "token_wizard": bool,
    "token_wizard_2nd": bool,
    "user_details": bool,
    "user_page_size": int,
}
CERT_ACTIONS = ["enrollCERTIFICATE", "revoke", "delete", "certificate_download_pkcs12"]


async def _login(stack: Stack, username: str, password: str) -> dict[str, Any]:
    async with stack.client() as client:
        answer = await client.post("/auth", json={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def _admin_post(stack: Stack, path: str, body: dict[str, Any]) -> None:
    async with stack.client(await stack.admin_token()) as client:
        answer = await client.post(path, json=body)
    assert answer.status_code < 300, answer.text


def _client_verifies(public_pem: bytes, text: str) -> bool:
    """What a privacyIDEA client does: drop ``signature``, dump sorted, check RSA-PSS."""
    body = json.loads(text)
    scheme, _, value = body.pop("signature").partition(":")
    key = serialization.load_pem_public_key(public_pem)
    assert scheme == "rsa_sha256_pss" and isinstance(key, rsa.RSAPublicKey)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)
    try:
        key.verify(
            bytes.fromhex(value), json.dumps(body, sort_keys=True).encode(), pss, hashes.SHA256()
        )
    except InvalidSignature:
        return False
    return True


async def test_the_token_counts_in_either_header(memory_stack: Stack) -> None:
    token = await memory_stack.admin_token()
    async with memory_stack.client() as client:
        for headers in (
            {"PI-Authorization": token},
            {"Authorization": token},
            {"PI-Authorization": token, "Authorization": f"Bearer {token}"},
        ):
            answer = await client.get("/token/", headers=headers)
            assert answer.status_code == 200, (headers.keys(), answer.text)


async def test_missing_invalid_expired_and_differing_tokens_are_privacyideas_401s(
    memory_stack: Stack,
) -> None:
    token = await memory_stack.admin_token()
    secret = memory_stack.settings.resolved_secret_key
    expired = issue_token(Identity(username="admin", role="admin"), secret, -1)
    cases = [
        ({}, 4033, "Authorization: missing"),
        ({"PI-Authorization": ""}, 4033, "Authorization: missing"),
        ({"PI-Authorization": "garbage"}, 4304, "invalid access token"),
        ({"PI-Authorization": token[:-2]}, 4304, "invalid access token"),
        ({"Authorization": expired}, 4305, "expired"),
        ({"PI-Authorization": token, "Authorization": expired}, 4304, "different access tokens"),
    ]
    async with memory_stack.client() as client:
        for headers, code, words in cases:
            answer = await client.get("/token/", headers=headers)
            assert answer.status_code == 401, (headers.keys(), answer.text)
            error = answer.json()["result"]["error"]
            assert error["code"] == code and words in error["message"], (headers.keys(), error)


async def test_admin_login_answers_rights_menus_and_privacyideas_ui_settings(
    memory_stack: Stack,
) -> None:
    body = await _login(memory_stack, "admin", "admin-password-1")
    result = body["result"]
    assert result["status"] is True and result["authentication"] == "ACCEPT"
    value = result["value"]
    for key, kind in PI_UI_KEYS.items():
        assert key in value, key
        assert value[key] is None if kind is None else type(value[key]) is kind, (key, value[key])
    assert value["default_tokentype"] == "certificate"
    assert (value["role"], value["username"], value["realm"]) == ("admin", "admin", "")
    assert set(CERT_ACTIONS) <= set(value["rights"])
    assert {"tokenlist", "caconnectorread", "policywrite", "auditlog"} <= set(value["rights"])
    assert value["menus"] == ["users", "tokens", "audit", "config"]
    assert body["versionnumber"] == __version__


async def test_rights_follow_the_policies(memory_stack: Stack) -> None:
    await _admin_post(
        memory_stack, "/user/", {"user": "alice", "realm": "corp", "password": PASSWORD}
    )
    user = (await _login(memory_stack, "alice@corp", PASSWORD))["result"]["value"]
    assert user["rights"] == ["enrollCERTIFICATE", "certificate_download_pkcs12"]
    assert user["menus"] == ["tokens"]

    await _admin_post(memory_stack, "/policy/own", {"scope": "user", "action": "revoke"})
    await _admin_post(
        memory_stack, "/policy/helpdesk", {"scope": "admin", "action": "revoke, delete"}
    )
    user = (await _login(memory_stack, "alice@corp", PASSWORD))["result"]["value"]
    assert user["rights"] == ["revoke"]
    admin = (await _login(memory_stack, "admin", "admin-password-1"))["result"]["value"]
    assert {"revoke", "delete", "tokenlist"} <= set(admin["rights"])
    assert not {"enrollCERTIFICATE", "certificate_download_pkcs12"} & set(admin["rights"])


async def test_a_client_verifies_every_answer_with_the_downloaded_key(memory_stack: Stack) -> None:
    async with memory_stack.client() as client:
        published = await client.get("/signature/publickey")
        assert published.status_code == 200
        assert published.content.startswith(b"-----BEGIN PUBLIC KEY-----")
        login = await client.post(
            "/auth", json={"username": "admin", "password": "admin-password-1"}
        )
        refused = await client.get("/token/")
        unknown = await client.get("/no/such/route")
        listed = await client.get(
            "/token/", headers={"PI-Authorization": login.json()["result"]["value"]["token"]}
        )
    for answer in (login, refused, unknown, listed):
        assert _client_verifies(published.content, answer.text), answer.text
    tampered = json.loads(listed.text)
    tampered["result"]["value"]["count"] = 99
    assert not _client_verifies(published.content, json.dumps(tampered))
    key_file = memory_stack.settings.data_dir / KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in key_file.read_bytes()
    assert b"PRIVATE KEY" not in published.content
