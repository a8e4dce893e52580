"""Issue 9: CA connectors reach only allowed hosts, never metadata, never follow redirects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from services.ca_worker.connectors.base import PermanentCAError
from services.ca_worker.connectors.cfssl import CfsslConnector
from shared.ca_hosts import HostPolicy, IPAddress
from shared.cfssl_options import cfssl_options
from shared.db.models import CAConnector
from shared.pki import load_certificate
from tests.support.cfssl import CfsslServer
from tests.support.pki import make_csr
from tests.support.stack import Stack, prepare, running_stack, settings_for

PASSWORD = "Alice-Url-Pw-7c1d"
SSRF_URLS = [
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://169.254.170.2/v2/credentials", "link-local"),
    ("http://2852039166/", "canonical"),
    ("http://0251.0376.0251.0376/", "canonical"),
    ("http://0xa9fea9fe/", "canonical"),
    ("http://0xa9.0xfe.0xa9.0xfe/", "canonical"),
    ("http://127.1:8888/", "canonical"),
    ("http://[::ffff:a9fe:a9fe]/", "link-local"),
    ("http://[::ffff:169.254.169.254]/", "IPv6"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://metadata.google.internal/computeMetadata/v1/", "metadata host"),
    ("http://0.0.0.0:8888/", "unspecified"),
    ("http://admin:secret@127.0.0.1:8888/", "user name or password"),
    ("http://127.0.0.1:8888@169.254.169.254/", "user name or password"),
    ("file:///etc/passwd", "http"),
    ("gopher://127.0.0.1:8888/", "http"),
    ("http://127.0.0.1:8888/?next=http://169.254.169.254/", "query"),
    ("http://10.20.30.40:8888/", "CERTTOKEN_CA_ALLOWED_HOSTS"),
]


async def _alice(stack: Stack, admin: str) -> str:
    async with stack.client(admin) as client:
        body = {"user": "alice", "realm": "corp", "password": PASSWORD}
        assert (await client.post("/user/", json=body)).status_code == 200
    return await stack.login("alice@corp", PASSWORD)


def _message(answer: httpx.Response) -> str:
    message: str = answer.json()["result"]["error"]["message"]
    return message


async def test_connectors_to_metadata_odd_ips_userinfo_or_other_schemes_are_refused(
    stack: Stack,
) -> None:
    admin = await stack.admin_token()
    user = await _alice(stack, admin)
    async with stack.client(admin) as client:
        for url, why in SSRF_URLS:
            answer = await client.post("/caconnector/evil", json={"type": "cfssl", "url": url})
            assert answer.status_code == 400, (url, answer.text)
            assert _message(answer).startswith("url:"), (url, answer.text)
            assert why in _message(answer), (url, answer.text)
            assert "secret" not in answer.text
        assert (await client.get("/caconnector/evil")).json()["result"]["value"] == []
        fine = await client.post(
            "/caconnector/fine", json={"type": "cfssl", "url": "http://127.0.0.1:8888"}
        )
        assert fine.status_code == 200, fine.text
    async with stack.client(user) as client:
        answer = await client.post(
            "/caconnector/mine", json={"type": "cfssl", "url": "http://127.0.0.1:8888"}
        )
        assert answer.status_code == 403


async def test_link_local_and_metadata_stay_refused_whatever_the_allow_list_says(
    tmp_path: Path,
) -> None:
    allowed = ["*", "169.254.169.254", "169.254.0.0/16", "fe80::/10", "metadata.google.internal"]
    settings = settings_for(tmp_path / "data", ca_allowed_hosts=allowed)
    await prepare(settings)
    async with running_stack(settings) as stack, stack.client(await stack.admin_token()) as client:
        for url in (
            "http://169.254.169.254/",
            "http://[fe80::1]:8888/",
            "http://metadata.google.internal/",
        ):
            answer = await client.post("/caconnector/evil", json={"type": "cfssl", "url": url})
            assert answer.status_code == 400, (url, answer.text)
            assert "never allowed" in _message(answer)
        # "*" admits any other host: a private address is accepted now.
        other = await client.post(
            "/caconnector/other", json={"type": "cfssl", "url": "http://10.20.30.40:8888"}
        )
        assert other.status_code == 200, other.text


async def test_stored_urls_with_userinfo_are_redacted_and_refused_by_the_worker(
    stack: Stack,
) -> None:
    admin = await stack.admin_token()
    user = await _alice(stack, admin)
    async with stack.db.write() as session:
        # As an older release stored them, before the api refused such URLs.
        for name, url in (
            ("legacy", "http://ca-admin:hunter2@127.0.0.1:9/"),
            ("moved", "http://10.20.30.40:9"),
        ):
            session.add(CAConnector(name=name, type="cfssl", options={"url": url}, cacert=""))
    async with stack.client(admin) as client:
        listing = await client.get("/caconnector/")
        shown = await client.get("/caconnector/legacy")
    for answer in (listing, shown):
        assert answer.status_code == 200
        assert "hunter2" not in answer.text and "ca-admin" not in answer.text
    assert shown.json()["result"]["value"][0]["data"]["url"] == "http://***@127.0.0.1:9/"
    # The ca_worker checks again: the token fails at once (not retried) with certtoken's reason,
    # which the user sees, since it is not the remote CA's text.
    async with stack.client(user) as client:
        for name, why in (("legacy", "user name or password"), ("moved", "10.20.30.40")):
            answer = await client.post("/token/init", json={"request": make_csr("x"), "ca": name})
            detail = answer.json()["detail"]
            assert detail["rollout_state"] == "failed", answer.text
            assert f"CA connector {name!r}" in detail["reason"] and why in detail["reason"]
            assert "hunter2" not in answer.text


async def test_the_worker_resolves_once_and_connects_to_the_checked_address(
    cfssl: CfsslServer,
) -> None:
    # cfssl listens on 127.0.0.1 only: the connection to ::1 is refused, the next one taken.
    first = [ip_address("::1"), ip_address("127.0.0.1")]
    answers: dict[str, list[IPAddress]] = {"cfssl.ca.test": first}
    asked: list[str] = []

    async def resolver(host: str, _port: int) -> list[IPAddress]:
        asked.append(host)
        return answers[host]

    url = cfssl.url.replace("127.0.0.1", "cfssl.ca.test")
    policy = HostPolicy(["cfssl.ca.test"], resolver)
    connector = CfsslConnector("named", cfssl_options({"url": url}), None, policy)
    try:
        # Revoking asks cfssl's info endpoint for the CA certificate first; cfssl.ca.test
        # exists only in this resolver, so an answer proves the checked address was used.
        with pytest.raises(PermanentCAError):
            await connector.revoke("01", "superseded")
        assert load_certificate(connector.ca_certificate()) == load_certificate(cfssl.cacert)
        # DNS rebinding: the same name now also resolves to the metadata address.
        answers["cfssl.ca.test"] = [ip_address("127.0.0.1"), ip_address("169.254.169.254")]
        with pytest.raises(PermanentCAError, match=r"url: cfssl\.ca\.test resolves to 169\.254"):
            await connector.revoke("01", "superseded")
    finally:
        await connector.close()
    assert asked.count("cfssl.ca.test") >= 2


@pytest.fixture
async def redirecting_ca() -> AsyncIterator[dict[str, Any]]:
    """A "CA" that answers every call with a redirect to a second server counting its hits."""
    state: dict[str, Any] = {"followed": 0}

    async def target(_request: web.Request) -> web.Response:
        state["followed"] += 1
        return web.json_response({"success": True, "result": {}})

    async def redirect(_request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{state['target']}/latest/meta-data/iam")

    runners = []
    for handler in (target, redirect):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        state["target" if handler is target else "url"] = f"http://127.0.0.1:{port}"
        runners.append(runner)
    try:
        yield state
    finally:
        for runner in runners:
            await runner.cleanup()


async def test_redirects_are_never_followed(stack: Stack, redirecting_ca: dict[str, Any]) -> None:
    admin = await stack.admin_token()
    user = await _alice(stack, admin)
    async with stack.client(admin) as client:
        body = {"type": "cfssl", "url": redirecting_ca["url"]}
        assert (await client.post("/caconnector/moving", json=body)).status_code == 200
        as_admin = await client.post(
            "/token/init",
            json={"request": make_csr("a"), "ca": "moving", "user": "alice", "realm": "corp"},
        )
    async with stack.client(user) as client:
        as_user = await client.post("/token/init", json={"request": make_csr("b"), "ca": "moving"})
    for answer in (as_admin, as_user):
        detail = answer.json()["detail"]
        assert detail["rollout_state"] == "failed", answer.text
        assert "redirect (HTTP 302)" in detail["reason"] and "not followed" in detail["reason"]
        assert "meta-data" not in detail["reason"]
    assert "meta-data/iam" in as_admin.json()["detail"]["ca_detail"]
    assert "meta-data" not in as_user.text
    assert redirecting_ca["followed"] == 0
