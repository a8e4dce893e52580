"""The web UI's files under ``/ui/`` with their security headers, and ``POST /certificate/decode``."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.pki import make_csr, self_signed_pem
from tests.support.stack import Stack


def value(answer: httpx.Response) -> Any:
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]["value"]


async def test_ui_is_served_with_a_strict_policy(memory_stack: Stack) -> None:
    async with memory_stack.client() as client:
        root = await client.get("/")
        assert root.status_code == 307 and root.headers["location"] == "/ui/"
        bare = await client.get("/ui")
        assert bare.status_code == 307 and bare.headers["location"] == "/ui/"
        page = await client.get("/ui/")
        script = await client.get("/ui/js/app.js")
        missing = await client.get("/ui/js/nothing.js")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<script type="module" src="js/app.js">' in page.text
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert missing.status_code == 404
    # No page sets a cookie: the login token is sent by the page itself, so there is no CSRF.
    assert "set-cookie" not in page.headers


async def test_ui_files_hold_no_inline_script_or_style() -> None:
    from services.api.ui import STATIC

    for path in STATIC.rglob("*.html"):
        text = path.read_text()
        assert "<script>" not in text and " style=" not in text and " onclick=" not in text, path


async def test_decode_shows_what_a_csr_and_a_certificate_say(memory_stack: Stack) -> None:
    token = await memory_stack.admin_token()
    async with memory_stack.client(token) as client:
        csr = value(await client.post("/certificate/decode", json={"csr": make_csr("alice")}))
        cert = value(
            await client.post("/certificate/decode", json={"certificate": self_signed_pem("bob")})
        )
        bad = await client.post("/certificate/decode", json={"csr": "not a csr"})
        both = await client.post("/certificate/decode", json={"csr": "x", "certificate": "y"})
        bad_cert = await client.post("/certificate/decode", json={"certificate": "nope"})
    assert csr["kind"] == "csr" and csr["subject"] == "CN=alice"
    assert csr["key_type"] in ("ec", "rsa")
    assert cert["kind"] == "certificate" and cert["subject"] == "CN=bob"
    assert cert["issuer"] == "CN=bob"
    assert len(cert["sha256_fingerprint"].split(":")) == 32
    assert cert["not_after"] > cert["not_before"]
    assert bad.status_code == 400
    assert bad.json()["result"]["error"]["message"].startswith("csr: ")
    assert both.status_code == 400
    assert "give either csr or certificate" in both.json()["result"]["error"]["message"]
    assert bad_cert.status_code == 400
    assert bad_cert.json()["result"]["error"]["message"].startswith("certificate: ")


async def test_decode_needs_a_login(memory_stack: Stack) -> None:
    async with memory_stack.client() as client:
        answer = await client.post("/certificate/decode", json={"csr": make_csr("alice")})
    assert answer.status_code == 401
