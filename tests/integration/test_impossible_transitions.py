"""A transition the token's state forbids: refused at the api, an acknowledged no-op in a worker."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from sqlalchemy import func, select

from shared.db.models import IssuedCertificate, Token
from shared.messaging.base import Message
from shared.messaging.topology import CA_WORKER_QUEUE
from tests.integration.test_ca_approval import APPROVED_TEMPLATE, init, setup_owner, watch
from tests.integration.test_ca_revocation import enroll
from tests.support.pki import make_csr
from tests.support.stack import Stack


def error_of(answer: Any) -> str:
    message: str = answer.json()["result"]["error"]["message"]
    return message


async def test_the_api_answers_400_naming_the_state_and_the_action(memory_stack: Stack) -> None:
    stack = memory_stack
    admin = await stack.admin_token()
    await setup_owner(stack, admin)
    async with stack.client(admin) as client:
        enrolled = await enroll(client, "twice")
        first = await client.post("/token/revoke", json={"serial": enrolled["serial"]})
        assert first.status_code == 200, first.text
        again = await client.post("/token/revoke", json={"serial": enrolled["serial"]})
        # privacyIDEA's answer to a second revocation: 400 with its CA error's code.
        assert (again.status_code, again.json()["result"]["error"]["code"]) == (400, 503)
        assert error_of(again) == f"serial: token {enrolled['serial']} is revoked; cannot revoke it"

        made = await client.post("/caconnector/localca/templates/approved", json=APPROVED_TEMPLATE)
        assert made.status_code == 200, made.text
        held = await init(client)
        assert held["rollout_state"] == "pending"
        early = await client.post("/token/revoke", json={"serial": held["serial"]})
        assert (early.status_code, early.json()["result"]["error"]["code"]) == (400, 503)
        assert error_of(early) == f"serial: token {held['serial']} is pending; cannot revoke it"
        listed = (await client.get("/token/", params={"serial": held["serial"]})).json()
        assert listed["result"]["value"]["tokens"][0]["rollout_state"] == "pending"


class Jobs:
    """The jobs the api hands the ca_worker, caught before any worker takes them."""

    def __init__(self) -> None:
        self.caught: list[Message] = []

    async def catch(self, message: Message) -> None:
        self.caught.append(message)

    async def next(self, kind: str) -> Message:
        for _ in range(200):
            for job in self.caught:
                if job.type == kind:
                    self.caught.remove(job)
                    return job
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {kind} job")


async def stored(stack: Stack, serial: str) -> tuple[Any, ...]:
    async with stack.db.read() as session:
        token = await session.get(Token, serial)
        issued = await session.scalar(select(func.count()).select_from(IssuedCertificate))
    assert token is not None
    return (token.rollout_state, token.info, token.certificate, token.updated_at, issued)


async def test_a_worker_acknowledges_a_late_outcome_and_writes_nothing(
    idle_worker: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    stack = idle_worker
    jobs = Jobs()
    consumer = await stack.broker.consume(CA_WORKER_QUEUE, jobs.catch)
    events = await watch(stack)
    admin = await stack.admin_token()
    await setup_owner(stack, admin)
    async with stack.client(admin) as client:
        body = {"request": make_csr(), "ca": "localca", "user": "alice", "realm": "corp"}
        submitted = (await client.post("/token/init", json=body)).json()["detail"]
        serial = submitted["serial"]
        sign = await jobs.next("csr.sign")
        await stack.worker.router(sign)
        assert (await stored(stack, serial))[0] == "enrolled"
        revoked = await client.post("/token/revoke", json={"serial": serial})
        assert revoked.status_code == 200, revoked.text
        revoke = await jobs.next("ca.revoke")
        await stack.worker.router(revoke)
        before = await stored(stack, serial)
        assert before[0] == "revoked"

        # The CA's answer again, and the revocation again: acknowledged (the handler returns),
        # with a warning naming the token, its state and the event; nothing written.
        with caplog.at_level(logging.WARNING, logger="services.ca_worker"):
            await stack.worker.router(sign)
            await stack.worker.router(revoke)
        assert await stored(stack, serial) == before
        warned = [
            (r.serial, r.rollout_state, r.event)
            for r in caplog.records
            if r.getMessage().startswith("impossible transition")
        ]
        assert warned == [(serial, "revoked", "issue"), (serial, "revoked", "revoke")]

        # Nothing was announced either: the next event after token_revoke is the deletion's.
        deleted = await client.delete(f"/token/{serial}")
        assert deleted.status_code == 200, deleted.text
        await stack.worker.router(await jobs.next("ca.delete"))
        await events.wait(serial, "token_delete")
    await consumer.stop()
    assert [e.type for e in events.of(serial)] == ["token_init", "token_revoke", "token_delete"]
