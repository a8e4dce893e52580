"""The notifier end to end in one process: real HTTP, SQLite, each broker, a real SMTP server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.notifier.service import Notifier
from shared.events import to_message
from tests.support.notify import (
    add_handler,
    add_smtp_server,
    add_user,
    deliveries,
    publish,
    token_event,
    value,
    wait_deliveries,
)
from tests.support.pki import make_csr
from tests.support.smtp import SmtpSink, running_sink
from tests.support.stack import Stack, prepare, running_stack, settings_for

pytestmark = pytest.mark.smtp

PENDING_SUBJECT = "Certificate request {serial} is {rollout_state}"
PENDING_BODY = "Dear {givenname} {surname} ({username}),\nyour request {serial} awaits approval."
ALICE = "alice@example.org"


@pytest.fixture
async def admin(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """An API client of the ``stack`` fixture, logged in as the administrator."""
    async with stack.client(await stack.admin_token()) as client:
        yield client


@pytest.fixture(params=["memory", pytest.param("amqp", marks=pytest.mark.rabbitmq)])
def amqp(request: pytest.FixtureRequest) -> str:
    """ "" for the in-process broker, or the URL of a fresh RabbitMQ vhost."""
    if request.param == "memory":
        return ""
    url: str = request.getfixturevalue("amqp_url")
    return url


@asynccontextmanager
async def system(
    tmp_path: Path, amqp: str, **overrides: Any
) -> AsyncIterator[tuple[Stack, httpx.AsyncClient]]:
    """A running system with its own settings, and an administrator's client."""
    settings = settings_for(tmp_path / "data", amqp_url=amqp, **overrides)
    await prepare(settings)
    async with (
        running_stack(settings) as stack,
        stack.client(await stack.admin_token()) as client,
    ):
        yield stack, client


async def test_pending_rule_mails_the_owner_once_and_enrolled_tokens_not_at_all(
    stack: Stack, admin: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    await add_user(admin)
    await add_smtp_server(admin, "mail", smtp_sink)
    await add_handler(
        admin,
        {
            "emailconfig": "mail",
            "To": "tokenowner",
            "subject": PENDING_SUBJECT,
            "body": PENDING_BODY,
        },
        conditions={"rollout_state": "pending"},
        ordering=1,
    )
    # A second handler on every token_init, after the first: its mail shows the event was
    # handled, so that "no mail to alice" is an observation, not a timeout.
    await add_handler(
        admin,
        {"emailconfig": "mail", "To": "email", "To email": "audit@example.org"},
        name="audit",
        ordering=2,
    )

    answer = await admin.post(
        "/token/init",
        json={"type": "certificate", "request": make_csr(), "ca": "localca", "user": "alice"},
    )
    assert value(answer) is True
    serial = answer.json()["detail"]["serial"]
    assert answer.json()["detail"]["rollout_state"] == "enrolled"
    await wait_deliveries(admin, 1, serial=serial, status="sent")
    assert [m.rcpt_tos for m in smtp_sink.received] == [["audit@example.org"]]

    pending = token_event(serial="CRT00C0FFEE", rollout_state="pending")
    await publish(stack.broker, pending)
    await wait_deliveries(admin, 2, event_id=pending.id, status="sent")
    [mail] = smtp_sink.mails_to(ALICE)
    assert mail.subject == "Certificate request CRT00C0FFEE is pending"
    assert "Dear Alice Liddell (alice)" in mail.body
    assert "CRT00C0FFEE" in mail.body
    assert mail.mail_from == "certtoken@example.org"
    assert smtp_sink.count() == 3

    # The same event handled again, as after a redelivery, by this notifier and by a
    # second one at the same time: nothing more is mailed.
    other = Notifier(stack.settings, stack.broker, stack.db)
    await asyncio.gather(
        other.mailer.on_event(to_message(pending)), other.mailer.on_event(to_message(pending))
    )
    await other.stop()
    assert len(smtp_sink.mails_to(ALICE)) == 1
    assert smtp_sink.count() == 3


async def test_concurrent_handling_of_one_event_sends_one_mail(
    stack: Stack, admin: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    await add_user(admin)
    await add_smtp_server(admin, "mail", smtp_sink)
    await add_handler(admin, {"emailconfig": "mail", "To": "tokenowner"})
    event = token_event()
    notifiers = [Notifier(stack.settings, stack.broker, stack.db) for _ in range(3)]
    # Two consumers got the same event (a redelivery while the first still works on it).
    await asyncio.gather(*(n.mailer.on_event(to_message(event)) for n in notifiers))
    for notifier in notifiers:
        await notifier.stop()
    assert len(smtp_sink.mails_to(ALICE)) == 1
    [record] = await deliveries(admin, event_id=event.id)
    assert (record["status"], record["attempts"]) == ("sent", 1)


async def test_token_update_to_enrolled_mails_the_owner(
    stack: Stack, admin: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    await add_user(admin)
    await add_smtp_server(admin, "mail", smtp_sink)
    await add_handler(
        admin,
        {
            "emailconfig": "mail",
            "To": "tokenowner",
            "subject": "Your certificate {certificate_serial} is ready",
            "body": "{serial}: {certificate_subject}, valid until {certificate_not_after}",
        },
        event="token_update",
        conditions={"rollout_state": "enrolled"},
    )
    # privacyIDEA's rule on token_init/pending must not fire on the approval.
    await add_handler(
        admin,
        {"emailconfig": "mail", "To": "email", "To email": "pending@example.org"},
        conditions={"rollout_state": "pending"},
    )
    approved = token_event(
        "token_update",
        serial="CRT0000A11E",
        rollout_state="enrolled",
        previous_rollout_state="pending",
        certificate_serial="5f3a",
        certificate_subject="CN=alice",
        certificate_not_after="2027-11-27T00:00:00+00:00",
        admin="camanager",
    )
    await publish(stack.broker, approved)
    await wait_deliveries(admin, 1, event_id=approved.id, status="sent")
    [mail] = smtp_sink.received
    assert mail.rcpt_tos == [ALICE]
    assert mail.subject == "Your certificate 5f3a is ready"
    assert mail.body.strip() == "CRT0000A11E: CN=alice, valid until 2027-11-27T00:00:00+00:00"


async def test_smtp_down_during_the_event_then_up_delivers_once(tmp_path: Path, amqp: str) -> None:
    sink = SmtpSink()  # not listening yet: connection refused
    async with system(tmp_path, amqp, retry_delays_ms=[200, 500], max_attempts=10) as (
        stack,
        admin,
    ):
        await add_user(admin)
        await add_smtp_server(admin, "mail", sink)
        await add_handler(admin, {"emailconfig": "mail", "To": "tokenowner"})
        event = token_event()
        await publish(stack.broker, event)
        [deferred] = await wait_deliveries(admin, 1, event_id=event.id, status="retrying")
        assert "SMTPConnectError" in deferred["error"]
        sink.start()
        try:
            [sent] = await wait_deliveries(admin, 1, event_id=event.id, status="sent")
            assert sent["attempts"] >= 2
            assert len(sink.mails_to(ALICE)) == 1
            # Sent and recorded: the event was acknowledged, no copy is left to retry.
            marker = token_event(serial="CRT0000000F")
            await publish(stack.broker, marker)
            await wait_deliveries(admin, 1, event_id=marker.id, status="sent")
            assert len(sink.mails_to(ALICE)) == 2
            assert len({m.message["Message-ID"] for m in sink.received}) == 2
        finally:
            sink.stop()


async def test_last_attempt_parks_the_delivery_for_an_admin_to_retry(
    tmp_path: Path, amqp: str
) -> None:
    sink = SmtpSink()
    async with system(tmp_path, amqp, retry_delays_ms=[100, 200], max_attempts=3) as (
        stack,
        admin,
    ):
        await add_user(admin)
        await add_smtp_server(admin, "mail", sink)
        await add_handler(admin, {"emailconfig": "mail", "To": "tokenowner"})
        event = token_event()
        await publish(stack.broker, event)
        [parked] = await wait_deliveries(admin, 1, status="failed")
        assert parked["attempts"] == 3
        assert parked["error"].startswith("gave up after 3 attempt(s): ")
        assert parked["permanent"] is False
        assert (parked["recipient"], parked["event_id"]) == (ALICE, event.id)

        sink.start()
        try:
            retried = await admin.post(f"/event/deliveries/{parked['id']}/retry")
            assert value(retried) is True
            [mail] = await sink.wait_for(1)
            [sent] = await wait_deliveries(admin, 1, status="sent")
            assert (sent["id"], sent["attempts"]) == (parked["id"], 4)
            assert mail.rcpt_tos == [ALICE]
            again = await admin.post(f"/event/deliveries/{parked['id']}/retry")
            assert again.status_code == 409
            assert await deliveries(admin, status="failed") == []
            assert sink.count() == 1
        finally:
            sink.stop()


async def test_permanent_refusal_is_recorded_and_not_retried(
    stack: Stack, admin: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    await add_user(admin)
    await add_smtp_server(admin, "mail", smtp_sink)
    await add_handler(admin, {"emailconfig": "mail", "To": "tokenowner"})
    smtp_sink.refused.add(ALICE)
    event = token_event()
    await publish(stack.broker, event)
    [failed] = await wait_deliveries(admin, 1, event_id=event.id, status="failed")
    assert failed["permanent"] is True
    assert failed["attempts"] == 1
    assert "550" in failed["error"]
    marker = token_event(serial="CRT0000000F", username="bob")
    await add_user(admin, "bob", email="bob@example.org")
    await publish(stack.broker, marker)
    await wait_deliveries(admin, 1, event_id=marker.id, status="sent")
    assert smtp_sink.rcpt_attempts.count(ALICE) == 1
    assert smtp_sink.mails_to(ALICE) == []


async def test_missing_address_and_unknown_server_are_failed_deliveries(
    stack: Stack, admin: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    await add_user(admin, "bob", email="")
    await add_smtp_server(admin, "mail", smtp_sink)
    await add_smtp_server(admin, "gone", smtp_sink)
    await add_handler(admin, {"emailconfig": "mail", "To": "tokenowner"}, name="owner")
    await add_handler(
        admin,
        {"emailconfig": "gone", "To": "email", "To email": "ops@example.org"},
        name="ops",
    )
    assert value(await admin.delete("/smtpserver/gone")) is True
    event = token_event(username="bob")
    await publish(stack.broker, event)
    failed = await wait_deliveries(admin, 2, event_id=event.id, status="failed")
    errors = {f["handler_name"]: f["error"] for f in failed}
    assert errors == {
        "owner": "token owner bob@corp has no e-mail address",
        "ops": "unknown SMTP server 'gone'",
    }
    assert all(f["permanent"] for f in failed)
    assert smtp_sink.count() == 0


async def test_outbox_folder_without_smtp_server(stack: Stack, admin: httpx.AsyncClient) -> None:
    await add_user(admin)
    await add_handler(admin, {"To": "tokenowner", "subject": "{serial} for {username}"})
    event = token_event(serial="CRT000B0B00")
    await publish(stack.broker, event)
    await wait_deliveries(admin, 1, event_id=event.id, status="sent")
    files = list(stack.settings.mail_outbox.glob("*.eml"))
    assert len(files) == 1
    text = files[0].read_text()
    assert "Subject: CRT000B0B00 for alice" in text
    assert "To: alice@example.org" in text


async def test_configuration_changes_apply_to_the_next_event(
    stack: Stack, admin: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    await add_user(admin)
    await add_smtp_server(admin, "mail", smtp_sink)
    options = {"emailconfig": "mail", "To": "tokenowner", "subject": "first {serial}"}
    handler = await add_handler(admin, options)

    async def handle(serial: str) -> None:
        event = token_event(serial=serial)
        await publish(stack.broker, event)
        await wait_deliveries(admin, 1, event_id=event.id, status="sent")

    await handle("CRT00000001")
    changed = {"id": handler, "name": "owner", "event": "token_init"}
    changed |= {"handlermodule": "UserNotification", "action": "sendmail"}
    value(
        await admin.post(
            "/event", json={**changed, "options": {**options, "subject": "second {serial}"}}
        )
    )
    await handle("CRT00000002")

    # Another server for the same identifier: the pooled connections follow the change.
    with running_sink() as other:
        await add_smtp_server(admin, "mail", other)
        await handle("CRT00000003")
        value(await admin.post(f"/event/disable/{handler}"))
        await add_handler(
            admin, {"emailconfig": "mail", "To": "email", "To email": "audit@example.org"}
        )
        await handle("CRT00000004")
        assert [(m.subject, m.rcpt_tos) for m in other.received] == [
            ("second CRT00000003", [ALICE]),
            ("token_init: certificate token CRT00000004 is pending", ["audit@example.org"]),
        ]
    assert [m.subject for m in smtp_sink.received] == ["first CRT00000001", "second CRT00000002"]


async def test_a_deferral_4xx_is_retried_until_accepted(
    stack: Stack, admin: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    await add_user(admin)
    await add_smtp_server(admin, "mail", smtp_sink)
    await add_handler(admin, {"emailconfig": "mail", "To": "tokenowner"})
    smtp_sink.deferrals = 2  # "451 try again later" twice, then accepted
    event = token_event()
    await publish(stack.broker, event)
    [sent] = await wait_deliveries(admin, 1, event_id=event.id, status="sent")
    assert sent["attempts"] == 3
    assert smtp_sink.rcpt_attempts == [ALICE] * 3
    assert len(smtp_sink.mails_to(ALICE)) == 1
