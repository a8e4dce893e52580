"""Templates that need approval: pending, the CA manager's list, approve, deny, conflicts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from shared.events import CloudEvent, decode
from shared.messaging.base import Consumer, Message
from shared.messaging.topology import EVENTS_EXCHANGE
from tests.support.pki import make_csr, openssl_verify
from tests.support.stack import Stack


class Events:
    """Every token event the system publishes, as a subscriber sees them."""

    def __init__(self) -> None:
        self.seen: list[CloudEvent] = []
        self.consumer: Consumer | None = None

    async def on_message(self, message: Message) -> None:
        self.seen.append(decode(message.body))

    def of(self, serial: str, kind: str | None = None) -> list[CloudEvent]:
        return [e for e in self.seen if e.subject == serial and kind in (None, e.type)]

    async def wait(self, serial: str, kind: str, count: int = 1) -> list[CloudEvent]:
        for _ in range(500):
            found = self.of(serial, kind)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {kind} event for {serial}: {self.seen}")


async def watch(stack: Stack) -> Events:
    events = Events()
    events.consumer = await stack.broker.subscribe(EVENTS_EXCHANGE, "token.#", events.on_message)
    return events


async def setup_owner(stack: Stack, token: str) -> None:
    async with stack.client(token) as client:
        answer = await client.post(
            "/user/", json={"user": "alice", "realm": "corp", "email": "alice@example.org"}
        )
    assert answer.status_code == 200, answer.text


APPROVED_TEMPLATE = {
    "approval": "required",
    "validity_days": 30,
    "subject_components": ["email", "realm"],
    "extended_key_usage": ["clientAuth", "emailProtection"],
}


async def init(client: Any, template: str = "approved", cn: str = "alice") -> dict[str, Any]:
    answer = await client.post(
        "/token/init",
        json={
            "type": "certificate",
            "request": make_csr(cn),
            "ca": "localca",
            "user": "alice",
            "realm": "corp",
            "template": template,
        },
    )
    assert answer.status_code == 200, answer.text
    detail: dict[str, Any] = answer.json()["detail"]
    return detail


async def test_approve_enrolls_once_and_deny_records_the_reason(
    stack: Stack, tmp_path: Path
) -> None:
    token = await stack.admin_token()
    await setup_owner(stack, token)
    events = await watch(stack)
    async with stack.client(token) as client:
        made = await client.post("/caconnector/localca/templates/approved", json=APPROVED_TEMPLATE)
        assert made.status_code == 200, made.text
        listed = (await client.get("/caconnector/localca/templates")).json()["result"]["value"]
        assert listed["templates"]["approved"]["approval"] == "required"
        assert listed["templates"]["default"]["builtin"] is True

        first = await init(client)
        assert first["rollout_state"] == "pending"
        request_id = first["request_id"]
        serial = first["serial"]
        init_event = (await events.wait(serial, "token_init"))[0]
        assert init_event.data["rollout_state"] == "pending"
        assert init_event.data["request_id"] == request_id
        assert init_event.data["admin"] == "admin"

        pending = (await client.get("/ca/localca/requests", params={"status": "pending"})).json()
        assert "value" in pending["result"], pending
        [held] = pending["result"]["value"]["requests"]
        assert held["request_id"] == request_id and held["serial"] == serial
        assert held["csr"]["subject"] == "CN=alice"
        assert (held["csr"]["key_type"], held["csr"]["key_size"]) == ("ec", 256)
        assert held["csr"]["sans"] == []
        assert held["requester"] == "admin:admin" and held["time"]

        approved = await client.post(f"/ca/localca/requests/{request_id}/approve")
        assert approved.status_code == 200, approved.text
        detail = approved.json()["detail"]
        assert detail["rollout_state"] == "enrolled"
        cacert = (await client.get("/ca/localca/cacert")).text
        verified = openssl_verify(tmp_path, cacert, detail["certificate"])
        assert verified.returncode == 0, verified.stderr
        cert = x509.load_pem_x509_certificate(detail["certificate"].encode())
        assert cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)[0].value == (
            "alice@example.org"
        )
        assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == (
            "corp"
        )

        again = await client.post(f"/ca/localca/requests/{request_id}/approve")
        assert again.status_code == 409
        assert request_id in again.json()["result"]["error"]["message"]
        late_deny = await client.post(f"/ca/localca/requests/{request_id}/deny", json={})
        assert late_deny.status_code == 409

        second = await init(client, cn="alice2")
        assert second["rollout_state"] == "pending"
        denied = await client.post(
            f"/ca/localca/requests/{second['request_id']}/deny",
            json={"reason": "not on the staff list"},
        )
        assert denied.status_code == 200, denied.text
        assert denied.json()["detail"]["rollout_state"] == "denied"
        assert denied.json()["detail"]["reason"] == "not on the staff list"
        deny_again = await client.post(f"/ca/localca/requests/{second['request_id']}/deny")
        assert deny_again.status_code == 409

        tokens = (await client.get("/token/", params={"serial": second["serial"]})).json()
        [stored] = tokens["result"]["value"]["tokens"]
        assert stored["rollout_state"] == "denied"
        assert stored["info"]["reason"] == "not on the staff list"
        still = (await client.get("/ca/localca/requests", params={"status": "pending"})).json()
        assert still["result"]["value"]["count"] == 0
        missing = await client.post("/ca/localca/requests/nope/approve")
        assert missing.status_code == 404

    updates = await events.wait(serial, "token_update")
    denials = await events.wait(second["serial"], "token_update")
    # Let any duplicate arrive before counting.
    await asyncio.sleep(0.3)
    updates = events.of(serial, "token_update")
    assert len(updates) == 1
    assert updates[0].data["previous_rollout_state"] == "pending"
    assert updates[0].data["rollout_state"] == "enrolled"
    assert updates[0].data["admin"] == "admin"
    assert updates[0].data["certificate"] == detail["certificate"]
    assert len(events.of(second["serial"], "token_update")) == 1
    assert denials[0].data["rollout_state"] == "denied"
    assert denials[0].data["reason"] == "not on the staff list"
    assert events.consumer is not None
    await events.consumer.stop()


async def test_template_input_is_checked(stack: Stack) -> None:
    token = await stack.admin_token()
    async with stack.client(token) as client:
        cases = [
            ({"approval": "maybe"}, "approval"),
            ({"key_usage": ["keyCertSign"]}, "key_usage"),
            ({"extended_key_usage": ["serverAuth"]}, "extended_key_usage"),
            ({"validity_days": 0}, "validity_days"),
            ({"subject_components": ["phone"]}, "subject_components"),
            ({"colour": "blue"}, "colour"),
        ]
        for body, word in cases:
            answer = await client.post("/caconnector/localca/templates/t1", json=body)
            assert answer.status_code == 400, (body, answer.text)
            assert word in answer.json()["result"]["error"]["message"], (body, answer.text)
        default = await client.post("/caconnector/localca/templates/default", json={})
        assert default.status_code == 400
        unknown = await client.post("/caconnector/nosuch/templates/t1", json={})
        assert unknown.status_code == 404
        form = await client.post(
            "/caconnector/localca/templates/t2",
            data={"approval": "none", "sans": "DNS:*.corp.example, email:owner"},
        )
        assert form.status_code == 200, form.text
        sans = form.json()["detail"]["options"]["sans"]
        assert sans == {"DNS": ["*.corp.example"], "email": ["owner"]}
        legacy = await client.post(
            "/caconnector/localca/templates/t3", data={"allowed_sans": "DNS,email"}
        )
        assert legacy.status_code == 400
        assert "DNS SANs need value rules" in legacy.json()["result"]["error"]["message"]
        listed = (await client.get("/caconnector/localca/templates")).json()["result"]["value"]
        assert set(listed["templates"]) == {"default", "t2"}
        assert (await client.delete("/caconnector/localca/templates/t2")).status_code == 200
        assert (await client.delete("/caconnector/localca/templates/t2")).status_code == 404
        # An unknown template is a 400 at init, before anything is stored.
        user = await client.post("/user/", json={"user": "alice", "realm": "corp"})
        assert user.status_code == 200
        unknown = await client.post(
            "/token/init",
            json={
                "request": make_csr(),
                "ca": "localca",
                "user": "alice",
                "realm": "corp",
                "template": "nosuch",
            },
        )
        assert unknown.status_code == 400
        assert unknown.json()["result"]["error"]["message"].startswith("template:")
        assert "nosuch" in unknown.json()["result"]["error"]["message"]
        listed = (await client.get("/token/")).json()["result"]["value"]
        assert listed["count"] == 0
