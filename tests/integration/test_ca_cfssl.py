"""The cfssl connector against a real ``cfssl serve``: enroll, revoke, outages, bad config."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from sqlalchemy import select, text

from shared.db.models import CAConnector, Token
from shared.messaging.topology import CA_WORKER_QUEUE
from tests.integration.test_ca_approval import watch
from tests.support.cfssl import AUTH_KEY, AUTHED_PROFILE, CfsslServer
from tests.support.jobs import tapped
from tests.support.pki import make_csr, openssl_verify
from tests.support.stack import Stack, prepare, running_stack, settings_for


async def add_connector(client: httpx.AsyncClient, name: str, **options: Any) -> None:
    answer = await client.post(f"/caconnector/{name}", json={"type": "cfssl", **options})
    assert answer.status_code == 200, answer.text


async def init(client: httpx.AsyncClient, ca: str, cn: str = "alice") -> dict[str, Any]:
    answer = await client.post(
        "/token/init",
        json={"request": make_csr(cn), "ca": ca, "user": "alice", "realm": "corp"},
    )
    assert answer.status_code == 200, answer.text
    detail: dict[str, Any] = answer.json()["detail"]
    return detail


async def state_of(client: httpx.AsyncClient, serial: str) -> dict[str, Any]:
    answer = (await client.get("/token/", params={"serial": serial})).json()
    token: dict[str, Any] = answer["result"]["value"]["tokens"][0]
    return token


async def test_a_job_delivered_again_is_not_signed_again(
    idle_worker: Stack, cfssl: CfsslServer
) -> None:
    # A worker that recorded the outcome and lost its ack (killed, or RabbitMQ dropped it) meets
    # the job again: the external CA must not issue a second certificate for the token.
    stack = idle_worker
    async with (
        stack.client(await stack.admin_token()) as client,
        tapped(stack.broker, CA_WORKER_QUEUE) as jobs,
    ):
        assert (await client.post("/user/", json={"user": "alice", "realm": "corp"})).is_success
        await add_connector(
            client, "remote", url=cfssl.url, profile=AUTHED_PROFILE, auth_key=AUTH_KEY, timeout=5
        )
        detail = await init(client, "remote")
        assert detail["rollout_state"] == "submitted", detail
        job = await jobs.next()
    handler = stack.worker.handler
    await handler(job)
    assert cfssl.issued() == 1
    async with stack.db.read() as session:
        token = await session.get(Token, detail["serial"])
    assert token is not None and token.rollout_state == "enrolled"
    for again in (dataclasses.replace(job, redelivered=True), dataclasses.replace(job, attempt=2)):
        await handler(again)
        assert cfssl.issued() == 1, "the CA was asked again for an enrolled token"
    async with stack.db.read() as session:
        after = await session.get(Token, detail["serial"])
    assert after is not None and after.certificate == token.certificate


async def test_enroll_and_revoke_through_cfssl_keep_the_key_secret(
    stack: Stack, cfssl: CfsslServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = await stack.admin_token()
    events = await watch(stack)
    answers: list[str] = []
    async with stack.client(token) as client:
        assert (await client.post("/user/", json={"user": "alice", "realm": "corp"})).is_success
        await add_connector(
            client, "remote", url=cfssl.url, profile=AUTHED_PROFILE, auth_key=AUTH_KEY, timeout=5
        )
        enrolled = await init(client, "remote")
        assert enrolled["rollout_state"] == "enrolled", enrolled
        verified = openssl_verify(tmp_path, cfssl.cacert, enrolled["certificate"])
        assert verified.returncode == 0, verified.stderr
        serial = x509.load_pem_x509_certificate(enrolled["certificate"].encode()).serial_number
        assert cfssl.status_of(serial) == "good"

        # Updating other options keeps the sealed key: the next enrollment still authenticates.
        await add_connector(client, "remote", url=cfssl.url, profile=AUTHED_PROFILE, timeout=4)
        again = await init(client, "remote", "alice2")
        assert again["rollout_state"] == "enrolled", again

        revoked = await client.post(
            "/token/revoke", json={"serial": enrolled["serial"], "reason": "superseded"}
        )
        assert revoked.json()["detail"]["rollout_state"] == "revoked", revoked.text
        assert cfssl.status_of(serial) == "revoked"
        refused = await client.delete("/caconnector/remote")
        assert refused.status_code == 409
        assert "token" in refused.json()["result"]["error"]["message"]
        for path in (
            "/caconnector/",
            "/caconnector/remote",
            "/caconnector/remote/templates",
            "/token/",
        ):
            answer = await client.get(path)
            assert answer.status_code == 200
            answers.append(answer.text)
        [shown] = (await client.get("/caconnector/remote")).json()["result"]["value"]
        assert shown["type"] == "cfssl" and shown["data"]["auth_key"] == "***"
        assert shown["data"]["url"] == cfssl.url
    await events.wait(enrolled["serial"], "token_revoke")
    async with stack.db.read() as session:
        row = await session.get(CAConnector, "remote")
        raw = (await session.execute(text("SELECT options, secrets FROM caconnector"))).all()
    assert row is not None and row.secrets
    for leak in (*answers, caplog.text, repr(raw), *(repr(e) for e in events.seen)):
        assert AUTH_KEY not in leak
        assert AUTH_KEY.upper() not in leak


async def test_a_wrong_configuration_fails_with_the_cas_message(
    stack: Stack, cfssl: CfsslServer
) -> None:
    token = await stack.admin_token()
    async with stack.client(token) as client:
        assert (await client.post("/user/", json={"user": "alice", "realm": "corp"})).is_success
        await add_connector(
            client, "badkey", url=cfssl.url, profile=AUTHED_PROFILE, auth_key="ff" * 16
        )
        await add_connector(client, "nokey", url=cfssl.url, profile=AUTHED_PROFILE)
        bad = await init(client, "badkey")
        assert bad["rollout_state"] == "failed"
        # An administrator sees the CA's own words apart from certtoken's reason.
        assert "invalid token" in bad["ca_detail"] and "invalid token" not in bad["reason"]
        nokey = await init(client, "nokey")
        assert nokey["rollout_state"] == "failed"
        assert "authentication required" in nokey["ca_detail"]
        # The token stays, with its state and the CA's reason.
        kept = await state_of(client, bad["serial"])
        assert kept["rollout_state"] == "failed" and "invalid token" in kept["info"]["ca_detail"]
        cases = [
            ({"type": "cfssl", "url": "ftp://x"}, "url"),
            ({"type": "cfssl"}, "url"),
            ({"type": "cfssl", "url": cfssl.url, "auth_key": "zz"}, "auth_key"),
            ({"type": "cfssl", "url": cfssl.url, "timeout": -1}, "timeout"),
            ({"type": "cfssl", "url": cfssl.url, "colour": "red"}, "colour"),
            ({"type": "msca", "url": cfssl.url}, "type"),
            ({"type": "local"}, "type"),
        ]
        for body, word in cases:
            answer = await client.post("/caconnector/other", json=body)
            assert answer.status_code == 400, (body, answer.text)
            assert word in answer.json()["result"]["error"]["message"], (body, answer.text)
        assert (await client.get("/caconnector/other")).json()["result"]["value"] == []
        assert (await client.post("/caconnector/badkey", json={"type": "local"})).status_code == 400
        await add_connector(client, "unused", url=cfssl.url)
        assert (await client.delete("/caconnector/unused")).status_code == 200
        assert (await client.get("/caconnector/unused")).json()["result"]["value"] == []


@pytest.fixture(params=["memory", pytest.param("amqp", marks=pytest.mark.rabbitmq)])
async def patient_stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    """The system with retries that outlast a short CA outage."""
    overrides: dict[str, Any] = {
        "retry_delays_ms": [200, 500],
        "max_attempts": 200,
        "init_wait_seconds": 1,
    }
    if request.param == "amqp":
        overrides["amqp_url"] = request.getfixturevalue("amqp_url")
    settings = settings_for(tmp_path / "data", **overrides)
    await prepare(settings)
    async with running_stack(settings) as running:
        yield running


async def test_requests_wait_out_a_stopped_cfssl(
    patient_stack: Stack, cfssl: CfsslServer, caplog: pytest.LogCaptureFixture
) -> None:
    stack = patient_stack
    token = await stack.admin_token()
    async with stack.client(token) as client:
        assert (await client.post("/user/", json={"user": "alice", "realm": "corp"})).is_success
        await add_connector(client, "remote", url=cfssl.url, profile="client", timeout=2)
        cfssl.stop()
        waiting = await init(client, "remote")
        assert waiting["rollout_state"] == "submitted"
        for _ in range(200):
            if caplog.text.count("CA temporarily unavailable") >= 3:
                break
            await asyncio.sleep(0.05)
        assert caplog.text.count("CA temporarily unavailable") >= 3
        assert (await state_of(client, waiting["serial"]))["rollout_state"] == "submitted"
        await asyncio.to_thread(cfssl.start)
        for _ in range(300):
            current = await state_of(client, waiting["serial"])
            if current["rollout_state"] != "submitted":
                break
            await asyncio.sleep(0.05)
        assert current["rollout_state"] == "enrolled", current
    assert await stack.broker.queue_depth("certtoken.ca_worker.parking") == 0
    async with stack.db.read() as session:
        issued = (
            await session.execute(select(text("count(*)")).select_from(text("issued_certificate")))
        ).scalar()
    assert issued == 1
