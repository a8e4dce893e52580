"""Planning: which handlers match, who receives what, and how the mail is built."""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage

from shared.notification.handlers import HandlerSpec
from shared.notification.planning import EventContext, Person, facts, message_id, plan, tag_values

WHEN = datetime(2026, 11, 27, 8, 30, 5, tzinfo=UTC)
ALICE = Person("alice", "alice@example.org", "corp", "Alice", "Liddell", 3)
CTX = EventContext(
    event_id="ev-1",
    event_type="token_init",
    time=WHEN,
    data={
        "serial": "CRT0000AB12",
        "tokentype": "certificate",
        "rollout_state": "pending",
        "username": "alice",
        "realm": "corp",
        "ca": "localca",
        "template": "webserver",
        "request_id": "req-7",
    },
    tokeninfo={"enrolled_by": "admin:root", "subject": "CN=alice"},
    owner=ALICE,
    admins={"root": Person("root", "root@example.org"), "nomail": Person("nomail")},
    senders={"mail": "certtoken@example.org"},
)


def handler(handler_id: int = 1, **options: str) -> HandlerSpec:
    """A sendmail handler on token_init for pending tokens."""
    return HandlerSpec(
        id=handler_id,
        name=f"h{handler_id}",
        events=("token_init",),
        conditions={"rollout_state": "pending"},
        options={"emailconfig": "mail", "To": "tokenowner", **options},
    )


def parse(text: str) -> EmailMessage:
    parsed = email.message_from_string(text, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_the_owner_receives_the_rendered_mail() -> None:
    spec = handler(subject="{serial} is {rollout_state}", body="Dear {user} {surname} ({username})")
    result = plan([spec], CTX)
    assert [v.matched for v in result.verdicts] == [True]
    [mail] = result.mails
    assert (mail.address, mail.recipient, mail.problem) == (ALICE.email, ALICE.email, "")
    assert mail.subject == "CRT0000AB12 is pending"
    msg = parse(mail.message)
    assert msg["To"] == "alice@example.org"
    assert msg["From"] == "certtoken@example.org"
    assert msg["Message-ID"] == message_id("ev-1", 1, "alice@example.org")
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg.get_content().strip() == "Dear Alice Liddell (alice)"  # type: ignore[attr-defined]
    assert mail.message.isascii()


def test_verdicts_in_ordering_with_the_reason_of_each_miss() -> None:
    late = replace(handler(1), ordering=5)
    early = replace(handler(2), ordering=1, conditions={"rollout_state": "enrolled"})
    off = replace(handler(3), active=False)
    other = replace(handler(4), events=("token_revoke",))
    result = plan([late, early, off, other], CTX)
    assert [(v.handler_id, v.matched, v.reason) for v in result.verdicts] == [
        (3, False, "inactive"),
        (4, False, "not bound to token_init"),
        (2, False, "rollout_state: 'pending' is not 'enrolled'"),
        (1, True, ""),
    ]
    assert [m.handler_id for m in result.mails] == [1]


def test_every_tag_has_a_value() -> None:
    values = tag_values(CTX, Person("bob", givenname="Bob", surname="Builder"))
    assert values["time"] == "08:30:05"
    assert values["date"] == "2026-11-27"
    assert values["admin"] == "root"  # who enrolled the token
    assert values["request_id"] == "req-7"
    assert values["template"] == "webserver"
    assert (values["recipient_givenname"], values["recipient_surname"]) == ("Bob", "Builder")
    assert values["user"] == "Alice"


def test_values_cannot_add_header_lines() -> None:
    evil = replace(
        CTX,
        data={**CTX.data, "serial": "CRT1\r\nBcc: victim@example.org"},
        owner=replace(ALICE, givenname="x\nTo: y"),
    )
    [mail] = plan([handler(subject="{serial} {givenname}")], evil).mails
    msg = parse(mail.message)
    assert msg["Bcc"] is None
    assert msg.get_all("To") == ["alice@example.org"]
    assert msg["Subject"] == "CRT1 Bcc: victim@example.org x To: y"


def test_html_bodies_escape_values() -> None:
    evil = replace(CTX, owner=replace(ALICE, givenname="<script>alert(1)</script>"))
    [mail] = plan([handler(mimetype="html", body="<p>Hello {givenname}</p>")], evil).mails
    assert mail.body == "<p>Hello &lt;script&gt;alert(1)&lt;/script&gt;</p>"
    assert parse(mail.message).get_content_type() == "text/html"


def test_recipient_problems_are_planned_not_raised() -> None:
    no_mail = replace(CTX, owner=replace(ALICE, email=""))
    [mail] = plan([handler()], no_mail).mails
    assert mail.problem == "token owner alice@corp has no e-mail address"
    assert mail.recipient == "tokenowner:alice@corp"
    assert mail.message == ""

    unknown = replace(CTX, owner=None)
    assert (
        plan([handler()], unknown).mails[0].problem == "token owner alice@corp is not a known user"
    )

    [server] = plan([handler(emailconfig="gone")], CTX).mails
    assert server.problem == "unknown SMTP server 'gone'"


def test_other_recipient_types() -> None:
    [a, b] = plan(
        [handler(To="email", **{"To email": "x@example.org,X@example.org,y@example.org"})], CTX
    ).mails[:2]
    assert (a.address, b.address) == ("x@example.org", "y@example.org")  # one mail per address

    [admin] = plan([handler(To="internal admin", **{"To internal admin": "root"})], CTX).mails
    assert admin.address == "root@example.org"
    [nomail] = plan([handler(To="internal admin", **{"To internal admin": "nomail"})], CTX).mails
    assert nomail.problem == "administrator 'nomail' has no e-mail address"

    [logged_in] = plan([handler(To="logged_in_user")], CTX).mails
    assert logged_in.address == "root@example.org"  # the admin who enrolled
    self_service = replace(CTX, tokeninfo={"enrolled_by": "user:alice"})
    assert plan([handler(To="logged_in_user")], self_service).mails[0].address == ALICE.email


def test_facts_from_event_token_and_owner() -> None:
    known = facts(replace(CTX, data={**CTX.data, "result_value": True}))
    assert known.tokeninfo["request_id"] == "req-7"  # the event's word over the stored info
    assert known.tokeninfo["subject"] == "CN=alice"
    assert known.user_info["userid"] == 3
    assert known.result_value == "True"
    assert known.has_owner
    assert not facts(replace(CTX, data={"serial": "X"})).has_owner


def test_message_id_is_stable_per_delivery() -> None:
    assert message_id("e", 1, "a@example.org") == message_id("e", 1, "a@example.org")
    assert message_id("e", 1, "a@example.org") != message_id("e", 2, "a@example.org")
