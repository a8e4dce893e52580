"""Numbers, booleans and echoes of input: every one bounded, a 400 naming the field, never a 500."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from services.api.params import MAX_ID, MAX_PAGE
from tests.support.pki import make_csr
from tests.support.stack import Stack

HUGE = 2**63
PASSWORD = "alice-password-1"


def refusal(answer: httpx.Response, status: int = 400) -> str:
    """The error message of a refused call, after checking its status."""
    assert answer.status_code == status, answer.text
    message: str = answer.json()["result"]["error"]["message"]
    return message


@pytest.fixture
async def clients(stack: Stack) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """An administrator's and a user's (alice@corp) client."""
    async with stack.client(await stack.admin_token()) as admin:
        made = await admin.post(
            "/user/",
            json={"user": "alice", "realm": "corp", "email": "a@example.org", "password": PASSWORD},
        )
        assert made.status_code == 200, made.text
        async with stack.client(await stack.login("alice@corp", PASSWORD)) as user:
            yield admin, user


async def test_page_and_pagesize_are_bounded(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], caplog: pytest.LogCaptureFixture
) -> None:
    admin, user = clients
    for number in (HUGE, 2**64 + 1, MAX_PAGE + 1):
        for client, path in ((admin, "/token/"), (user, "/token/"), (admin, "/audit/")):
            for field, bound in (("page", MAX_PAGE), ("pagesize", 1000)):
                message = refusal(await client.get(path, params={field: number}))
                assert message.startswith(f"{field}: ") and str(bound) in message
        deliveries = await admin.get("/event/deliveries", params={"page": number})
        assert refusal(deliveries).startswith("page: ")
    assert refusal(await user.get("/token/", params={"page": -1})).startswith("page: ")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_ids_in_paths_queries_and_bodies_are_bounded(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    admin, _ = clients
    for method, path, field in (
        ("GET", f"/event/{HUGE}", "handler_id"),
        ("DELETE", f"/event/{HUGE}", "handler_id"),
        ("POST", f"/event/enable/{HUGE}", "handler_id"),
        ("GET", f"/event/deliveries/{HUGE}", "delivery_id"),
        ("POST", f"/event/deliveries/{HUGE}/retry", "delivery_id"),
        ("GET", f"/event/deliveries?handler_id={HUGE}", "handler_id"),
    ):
        message = refusal(await admin.request(method, path))
        assert message.startswith(f"{field}: ") and str(MAX_ID) in message, message
    handler = {
        "id": HUGE,
        "name": "big",
        "event": "token_init",
        "handlermodule": "UserNotification",
        "action": "sendmail",
        "options": {"To": "tokenowner"},
    }
    message = refusal(await admin.post("/event", json=handler))
    assert message.startswith("id: ") and str(MAX_ID) in message
    # The bound itself is a valid id that names nothing.
    assert refusal(await admin.delete(f"/event/{MAX_ID}"), 404).startswith("id: ")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_genkey_is_a_boolean(clients: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> None:
    _, user = clients
    init = {"type": "certificate", "ca": "localca"}
    for genkey in ("abc", "2", 2, "yes please", [], "1.0"):
        answer = await user.post("/token/init", json={**init, "genkey": genkey})
        assert refusal(answer).startswith("genkey: "), genkey
    for off in ("0", "false", "FALSE", 0, False, ""):
        body = {**init, "genkey": off, "request": make_csr("alice")}
        answer = await user.post("/token/init", json=body)
        assert answer.status_code == 200, answer.text
        assert "pkcs12_password" not in answer.json()["detail"]
    for on in ("1", "True", " true ", 1, True):
        # With a certificate as well, genkey is a second mode: proof that it was read as true.
        body = {**init, "genkey": on, "certificate": "-"}
        message = refusal(await user.post("/token/init", json=body))
        assert message == "genkey: give only one of certificate, genkey", on
    form = {**init, "genkey": "abc"}
    assert refusal(await user.post("/token/init", data=form)).startswith("genkey: ")


async def test_echoes_of_input_are_cut(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    admin, user = clients
    digits = "9" * 400
    for keysize in (int(digits), digits):
        body = {"type": "certificate", "genkey": 1, "ca": "localca", "keysize": keysize}
        message = refusal(await user.post("/token/init", json=body))
        assert message.startswith("keysize: ") and "9" * 20 not in message
    long_name = "x" * 3000
    for method, path in (
        ("DELETE", f"/policy/{long_name}"),
        ("GET", f"/smtpserver/{long_name}"),
        ("DELETE", f"/user/corp/{long_name}"),
        ("GET", f"/event/conditions/{long_name}"),
        ("DELETE", f"/token/{long_name}"),
    ):
        message = refusal(await admin.request(method, path), 404)
        assert "x" * 41 not in message and len(message) < 200, message
    unknown = "k" * 5000
    handler = {"name": "n", "event": "token_init", "handlermodule": "UserNotification"}
    message = refusal(await admin.post("/event", json={**handler, unknown: 1}))
    assert "k" * 61 not in message and len(message) < 400
    for scope in ("y" * 5000, ["z"] * 5000):
        policy = {"scope": scope, "action": "enrollCERTIFICATE"}
        message = refusal(await admin.post("/policy/p", json=policy))
        assert len(message) < 400, message
