"""The reference text's example, end to end: a pending request mails its owner, once.

A handler on ``token_init`` with ``rollout_state=pending`` mails the token owner when a
template needs a CA manager's approval; an enrollment that ends ``enrolled`` mails nobody;
a handler on ``token_update`` with ``rollout_state=enrolled`` mails the owner on approval.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support.notify import add_handler, add_smtp_server, add_user, deliveries
from tests.support.pki import make_csr
from tests.support.smtp import SmtpSink
from tests.support.stack import Stack

pytestmark = pytest.mark.smtp


async def _init(client: object, cn: str, template: str = "") -> dict[str, str]:
    body = {
        "type": "certificate",
        "request": make_csr(cn),
        "ca": "localca",
        "user": "alice",
        "realm": "corp",
    }
    if template:
        body["template"] = template
    answer = await client.post("/token/init", json=body)  # type: ignore[attr-defined]
    assert answer.status_code == 200, answer.text
    detail: dict[str, str] = answer.json()["detail"]
    return detail


async def test_pending_enrollment_mails_the_owner_once(stack: Stack, smtp_sink: SmtpSink) -> None:
    token = await stack.admin_token()
    async with stack.client(token) as client:
        await add_user(client)
        await add_smtp_server(client, "mail", smtp_sink)
        await add_handler(
            client,
            {
                "emailconfig": "mail",
                "To": "tokenowner",
                "subject": "Certificate request {serial} is pending",
                "body": "Dear {givenname} {surname} ({username}), request {serial} awaits approval.",
            },
            name="pending",
            event="token_init",
            conditions={"rollout_state": "pending"},
        )
        await add_handler(
            client,
            {
                "emailconfig": "mail",
                "To": "tokenowner",
                "subject": "Certificate {serial} issued",
                "body": "Hello {givenname}: {serial}.",
            },
            name="approved",
            event="token_update",
            conditions={"rollout_state": "enrolled"},
        )
        made = await client.post(
            "/caconnector/localca/templates/approved", json={"approval": "required"}
        )
        assert made.status_code == 200, made.text

        enrolled = await _init(client, "alice-now")
        assert enrolled["rollout_state"] == "enrolled"
        pending = await _init(client, "alice-later", template="approved")
        assert pending["rollout_state"] == "pending"

        [mail] = await smtp_sink.wait_for(1)
        assert mail.subject == f"Certificate request {pending['serial']} is pending"
        assert "Dear Alice Liddell (alice)" in mail.body
        assert pending["serial"] in mail.body
        assert smtp_sink.mails_to("alice@example.org") == [mail]

        approved = await client.post(f"/ca/localca/requests/{pending['request_id']}/approve")
        assert approved.json()["detail"]["rollout_state"] == "enrolled", approved.text
        mails = await smtp_sink.wait_for(2)
        assert mails[1].subject == f"Certificate {pending['serial']} issued"

        # The notifier has handled every event by now; give a late one a moment all the same.
        await asyncio.sleep(0.5)
        assert smtp_sink.count() == 2
        assert await deliveries(client, serial=enrolled["serial"]) == []
        assert enrolled["serial"] not in " ".join(m.subject + m.body for m in mails)
