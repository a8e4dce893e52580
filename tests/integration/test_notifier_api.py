"""``/event`` and ``/smtpserver``: privacyIDEA-shaped configuration, refused at save time when bad."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from shared.db.models import Admin as AdminRow
from shared.db.models import EventHandler, SmtpServer
from shared.security import SecretBox
from tests.support.notify import add_handler, add_smtp_server, add_user, value
from tests.support.pki import make_csr
from tests.support.smtp import SmtpSink
from tests.support.stack import Stack

# Handlers name an SMTP server, which must exist: a real one (aiosmtpd) in every test.
pytestmark = pytest.mark.smtp

OWNER_OPTIONS = {"emailconfig": "mail", "To": "tokenowner"}


@pytest.fixture
def stack(memory_stack: Stack) -> Stack:
    """The system on the in-process broker (the broker plays no part in configuration)."""
    return memory_stack


@pytest.fixture
async def admin(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """An administrator's client."""
    async with stack.client(await stack.admin_token()) as client:
        yield client


async def handler_count(stack: Stack) -> int:
    async with stack.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(EventHandler)) or 0)


def error(answer: httpx.Response, status: int) -> str:
    assert answer.status_code == status, answer.text
    message: str = answer.json()["result"]["error"]["message"]
    return message


async def test_every_route_needs_an_admin(stack: Stack) -> None:
    routes = [
        ("GET", "/event/"),
        ("POST", "/event"),
        ("GET", "/event/1"),
        ("DELETE", "/event/1"),
        ("POST", "/event/enable/1"),
        ("POST", "/event/disable/1"),
        ("GET", "/event/conditions/UserNotification"),
        ("GET", "/event/actions/UserNotification"),
        ("GET", "/event/available"),
        ("POST", "/event/test"),
        ("GET", "/event/deliveries"),
        ("GET", "/event/deliveries/1"),
        ("POST", "/event/deliveries/1/retry"),
        ("GET", "/smtpserver/"),
        ("GET", "/smtpserver/mail"),
        ("POST", "/smtpserver/mail"),
        ("DELETE", "/smtpserver/mail"),
        ("POST", "/smtpserver/send_test_email"),
    ]
    async with stack.client() as anonymous:
        for method, path in routes:
            answer = await anonymous.request(method, path, json={})
            assert answer.status_code == 401, (method, path, answer.text)


async def test_smtp_servers_keep_passwords_sealed_and_unshown(
    stack: Stack, admin: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    await add_smtp_server(admin, "mail", smtp_sink, username="u", password="pw-secret-1")
    listed = value(await admin.get("/smtpserver/"))
    assert listed["mail"]["password_set"] is True
    assert "pw-secret-1" not in str(listed)
    assert listed["mail"]["password"] == "__CENSORED__"
    box = SecretBox(stack.settings.resolved_secret_key)
    async with stack.db.read() as session:
        stored = await session.get(SmtpServer, "mail")
    assert stored is not None
    assert "pw-secret-1" not in stored.password
    assert box.open(stored.password) == b"pw-secret-1"

    # Without a password the stored one stays; with one it is replaced.
    value(
        await admin.post(
            "/smtpserver/mail", json={"server": "smtp.example.org", "sender": "a@example.org"}
        )
    )
    one = value(await admin.get("/smtpserver/mail"))
    assert (one["server"], one["password_set"]) == ("smtp.example.org", True)
    value(
        await admin.post(
            "/smtpserver/mail", data={"server": "h", "sender": "a@example.org", "password": ""}
        )
    )
    assert value(await admin.get("/smtpserver/mail"))["password_set"] is False

    assert value(await admin.delete("/smtpserver/mail")) is True
    assert error(await admin.get("/smtpserver/mail"), 404).startswith("identifier:")
    assert error(await admin.delete("/smtpserver/mail"), 404).startswith("identifier:")


# The keys and value types of a server in privacyIDEA 3.14's GET /smtpserver/.
PI_SMTPSERVER_KEYS: dict[str, type] = {
    "certificate": str,
    "description": str,
    "dont_send_on_error": bool,
    "enqueue_job": bool,
    "password": str,
    "port": int,
    "private_key": str,
    "private_key_password": str,
    "sender": str,
    "server": str,
    "smime": bool,
    "timeout": int,
    "tls": bool,
    "username": str,
}


async def test_smtp_servers_have_privacyideas_keys_and_tls_means_starttls(
    stack: Stack, admin: httpx.AsyncClient
) -> None:
    # A privacyIDEA client's form: tls=1 asks for STARTTLS.
    form = {"server": "smtp.example.org", "sender": "a@example.org", "tls": "1", "port": "587"}
    assert value(await admin.post("/smtpserver/mail", data=form)) is True
    shown = value(await admin.get("/smtpserver/"))["mail"]
    assert {k: type(shown[k]) for k in PI_SMTPSERVER_KEYS} == PI_SMTPSERVER_KEYS
    assert (shown["tls"], shown["implicit_tls"], shown["port"]) == (True, False, 587)
    assert shown["password"] == shown["private_key_password"] == "__CENSORED__"
    async with stack.db.read() as session:
        stored = await session.get(SmtpServer, "mail")
    assert stored is not None
    assert (stored.starttls, stored.implicit_tls) == (True, False)


BAD_SERVERS: list[tuple[str, dict[str, Any], str]] = [
    ("mail", {"server": "h", "sender": "a@example.org", "port": 0}, "port"),
    ("mail", {"server": "h", "sender": "a@example.org", "port": "x"}, "port"),
    ("mail", {"server": "h", "sender": "not-an-address"}, "sender"),
    ("mail", {"server": "bad host!", "sender": "a@example.org"}, "server"),
    ("mail", {"sender": "a@example.org"}, "server"),
    (
        "mail",
        {"server": "h", "sender": "a@example.org", "tls": True, "implicit_tls": True},
        "implicit_tls",
    ),
    ("mail", {"server": "h", "sender": "a@example.org", "smime": True}, "smime"),
    ("mail", {"server": "ftp://h", "sender": "a@example.org"}, "server"),
    ("mail", {"server": "smtps://h:99999", "sender": "a@example.org"}, "server"),
    ("mail", {"server": "h", "sender": "a@example.org", "timeout": 0}, "timeout"),
    ("bad name", {"server": "h", "sender": "a@example.org"}, "identifier"),
]


async def test_bad_smtp_servers_are_refused(admin: httpx.AsyncClient) -> None:
    for identifier, params, field in BAD_SERVERS:
        message = error(await admin.post(f"/smtpserver/{identifier}", json=params), 400)
        assert message.startswith(field), (params, message)
    assert value(await admin.get("/smtpserver/")) == {}


async def test_send_test_email(admin: httpx.AsyncClient, smtp_sink: SmtpSink) -> None:
    await add_smtp_server(admin, "mail", smtp_sink)
    answer = await admin.post(
        "/smtpserver/send_test_email", data={"identifier": "mail", "recipient": "ops@example.org"}
    )
    assert value(answer) is True
    [mail] = await smtp_sink.wait_for(1)
    assert mail.rcpt_tos == ["ops@example.org"]
    assert "mail" in mail.subject
    missing = await admin.post(
        "/smtpserver/send_test_email", json={"identifier": "nope", "recipient": "ops@example.org"}
    )
    assert error(missing, 404).startswith("identifier:")
    smtp_sink.stop()
    down = await admin.post(
        "/smtpserver/send_test_email", json={"identifier": "mail", "recipient": "ops@example.org"}
    )
    assert value(down) is False
    assert down.json()["detail"]["permanent"] is False


async def test_handlers_privacyidea_style_form(
    stack: Stack, admin: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    await add_smtp_server(admin, "mail", smtp_sink)
    form = {
        "name": "pending",
        "event": "token_init,token_update",
        "handlermodule": "UserNotification",
        "action": "sendmail",
        "position": "post",
        "active": "True",
        "ordering": "3",
        "conditions": '{"rollout_state": "pending", "serial": "^CRT", "realm": ""}',
        "option.emailconfig": "mail",
        "option.To": "email",
        "option.To email": "a@example.org, b@example.org",
        "option.subject": "{serial} pending",
        "option.mimetype": "plain",
    }
    handler_id = value(await admin.post("/event", data=form))
    [shown] = value(await admin.get(f"/event/{handler_id}"))
    assert shown == {
        "id": handler_id,
        "name": "pending",
        "event": ["token_init", "token_update"],
        "handlermodule": "UserNotification",
        "action": "sendmail",
        "position": "post",
        "active": True,
        "ordering": 3,
        "conditions": {"rollout_state": "pending", "serial": "^CRT"},
        "options": {
            "emailconfig": "mail",
            "To": "email",
            "To email": "a@example.org,b@example.org",
            "subject": "{serial} pending",
            "mimetype": "plain",
        },
        "condition": "",
        "abort_on_error": False,
    }
    assert value(await admin.get("/event/")) == [shown]

    value(await admin.post("/event/disable/1".replace("1", str(handler_id))))
    assert value(await admin.get(f"/event/{handler_id}"))[0]["active"] is False
    value(await admin.post(f"/event/enable/{handler_id}"))
    assert value(await admin.get(f"/event/{handler_id}"))[0]["active"] is True

    # With an id, POST /event updates.
    updated = value(
        await admin.post(
            "/event",
            json={
                "id": handler_id,
                "name": "renamed",
                "event": ["token_revoke"],
                "handlermodule": "UserNotification",
                "action": "sendmail",
                "options": OWNER_OPTIONS,
            },
        )
    )
    assert updated == handler_id
    [shown] = value(await admin.get(f"/event/{handler_id}"))
    assert (shown["name"], shown["event"], shown["conditions"]) == ("renamed", ["token_revoke"], {})
    assert value(await admin.delete(f"/event/{handler_id}")) == handler_id
    assert await handler_count(stack) == 0
    # As in privacyIDEA: no such handler is an empty list.
    assert value(await admin.get(f"/event/{handler_id}")) == []
    for method, path in [
        ("DELETE", f"/event/{handler_id}"),
        ("POST", f"/event/enable/{handler_id}"),
    ]:
        assert error(await admin.request(method, path), 404).startswith("id:")


async def test_abort_on_error_is_stored_shown_and_kept_when_omitted(
    admin: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    await add_smtp_server(admin, "mail", smtp_sink)
    defaults = value(await admin.get("/event/defaults/UserNotification"))
    assert defaults == {"abort_on_error": False}
    handler_id = value(await admin.post("/event", json=_handler()))
    [shown] = value(await admin.get(f"/event/{handler_id}"))
    assert (shown["abort_on_error"], shown["condition"]) == (False, "")
    form = {k: v for k, v in _handler(id=handler_id).items() if k not in ("options", "conditions")}
    form |= {"option.To": "tokenowner", "option.emailconfig": "mail", "abort_on_error": "1"}
    assert value(await admin.post("/event", data=form)) == handler_id
    assert value(await admin.get("/event/"))[0]["abort_on_error"] is True
    del form["abort_on_error"]
    assert value(await admin.post("/event", data=form)) == handler_id
    assert value(await admin.get("/event/"))[0]["abort_on_error"] is True
    bad = await admin.post("/event", json=_handler(abort_on_error="maybe"))
    assert error(bad, 400).startswith("abort_on_error")


def _handler(**changes: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "name": "h",
        "event": "token_init",
        "handlermodule": "UserNotification",
        "action": "sendmail",
        "conditions": {"rollout_state": "pending"},
        "options": dict(OWNER_OPTIONS),
    }
    params.update(changes)
    return params


SAVE_ERRORS: list[tuple[dict[str, Any], str]] = [
    (_handler(event="token_sign"), "event: unknown event 'token_sign'"),
    (_handler(event=[]), "event: name at least one event"),
    (_handler(handlermodule="Token"), "handlermodule: unknown module 'Token'"),
    (_handler(action="sendsms"), "action: unknown action 'sendsms'"),
    (_handler(position="pre"), "position: 'pre' is not served"),
    (_handler(conditions={"colour": "red"}), "conditions.colour: unknown condition"),
    (_handler(conditions={"rollout_state": "soon"}), "conditions.rollout_state: 'soon'"),
    (_handler(conditions={"tokeninfo": "x"}), "conditions.tokeninfo: 'x' is not of the form"),
    (_handler(conditions={"user_info": "phone==1"}), "conditions.user_info: unknown attribute"),
    (_handler(conditions={"serial": "("}), "conditions.serial: not a regular expression"),
    (_handler(conditions={"token_has_owner": "sometimes"}), "conditions.token_has_owner"),
    (_handler(conditions="{not json"), "conditions: not valid JSON"),
    (_handler(conditions="[1]"), "conditions: must be a JSON object"),
    (_handler(options={"emailconfig": "mail"}), "option.To: required"),
    (_handler(options={**OWNER_OPTIONS, "bcc": "x"}), "option.bcc: unknown option"),
    (_handler(options={**OWNER_OPTIONS, "body": "{pin}"}), "option.body: unknown tag {pin}"),
    (_handler(options={**OWNER_OPTIONS, "subject": "{serial"}), "option.subject: malformed"),
    (_handler(options={**OWNER_OPTIONS, "mimetype": "rtf"}), "option.mimetype: 'rtf'"),
    (_handler(options={**OWNER_OPTIONS, "reply_to": "x"}), "option.reply_to: 'x' is not"),
    (_handler(options={"To": "email", "To email": "x"}), "option.To email: 'x' is not"),
    (_handler(options={"To": "email"}), "option.To email: required"),
    (
        _handler(options={**OWNER_OPTIONS, "emailconfig": "nosuch"}),
        "option.emailconfig: unknown SMTP server 'nosuch'",
    ),
    (
        _handler(options={"To": "internal admin", "To internal admin": "ghost"}),
        "option.To internal admin: unknown administrator 'ghost'",
    ),
    (_handler(ordering=-1), "ordering:"),
    (_handler(name=""), "name:"),
    (_handler(colour="red"), "colour:"),
    (_handler(options="To=tokenowner"), "options: must be an object"),
    ({"event": "token_init", "action": "sendmail"}, "name: required"),
]


async def test_save_time_errors(
    stack: Stack, admin: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    await add_smtp_server(admin, "mail", smtp_sink)
    for params, message in SAVE_ERRORS:
        refused = error(await admin.post("/event", json=params), 400)
        assert refused.startswith(message), (params, refused)
    assert await handler_count(stack) == 0


async def test_updates_are_checked_too(
    stack: Stack, admin: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    await add_smtp_server(admin, "mail", smtp_sink)
    assert error(await admin.post("/event", json=_handler(id=99)), 404).startswith("id:")
    assert await handler_count(stack) == 0
    handler_id = value(await admin.post("/event", json=_handler()))
    before = value(await admin.get(f"/event/{handler_id}"))
    bad = _handler(id=handler_id, name="changed", conditions={"rollout_state": "later"})
    assert error(await admin.post("/event", json=bad), 400).startswith("conditions.")
    form = {k: v for k, v in _handler(id=handler_id).items() if k not in ("options", "conditions")}
    form |= {"option.To": "tokenowner", "option.bcc": "x@example.org"}
    assert error(await admin.post("/event", data=form), 400).startswith("option.bcc:")
    assert value(await admin.get(f"/event/{handler_id}")) == before


async def test_an_admin_recipient_must_exist(
    stack: Stack, admin: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    await add_smtp_server(admin, "mail", smtp_sink)
    options = {"emailconfig": "mail", "To": "internal admin", "To internal admin": "admin"}
    assert await add_handler(admin, options) >= 1


async def test_descriptions(admin: httpx.AsyncClient) -> None:
    conditions = value(await admin.get("/event/conditions/UserNotification"))
    assert {
        "rollout_state",
        "tokentype",
        "realm",
        "tokenrealm",
        "serial",
        "token_has_owner",
        "tokeninfo",
        "result_value",
        "result_status",
        "detail_error_message",
        "user_info",
        "threshold_days",
    } <= set(conditions)
    assert "pending" in conditions["rollout_state"]["value"]
    actions = value(await admin.get("/event/actions/UserNotification"))
    assert set(actions["sendmail"]) == {
        "emailconfig",
        "To",
        "To email",
        "To internal admin",
        "subject",
        "body",
        "mimetype",
        "reply_to",
    }
    assert "{certificate_serial}" in actions["sendmail"]["body"]["description"]
    assert value(await admin.get("/event/available")) == [
        "token_init",
        "token_update",
        "token_revoke",
        "token_delete",
        "token_disable",
        "token_enable",
        "certificate_expiring",
        "ca_expiring",
    ]
    assert value(await admin.get("/event/positions/UserNotification")) == ["post"]
    assert error(await admin.get("/event/actions/Nope"), 404).startswith("handlermodule:")


async def test_dry_run_explains_without_sending(
    stack: Stack, admin: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    await add_user(admin)
    await add_smtp_server(admin, "mail", smtp_sink)
    async with stack.db.write() as session:
        await session.execute(
            update(AdminRow).where(AdminRow.name == "admin").values(email="root@example.org")
        )
    pending = await add_handler(
        admin,
        {**OWNER_OPTIONS, "subject": "{serial} is {rollout_state}", "body": "Dear {givenname}"},
        name="pending",
        conditions={"rollout_state": "pending"},
    )
    enrolled = await add_handler(
        admin, OWNER_OPTIONS, name="enrolled", conditions={"rollout_state": "enrolled"}
    )
    revoked = await add_handler(admin, OWNER_OPTIONS, name="revoked", event="token_revoke")
    to_admin = await add_handler(
        admin,
        {"emailconfig": "mail", "To": "internal admin", "To internal admin": "admin"},
        name="admin",
        ordering=5,
    )
    answer = await admin.post(
        "/event/test",
        json={
            "event": "token_init",
            "data": {
                "serial": "CRT0000AB12",
                "rollout_state": "pending",
                "username": "alice",
                "realm": "corp",
            },
        },
    )
    result = value(answer)
    assert [m["id"] for m in result["matched"]] == [pending, to_admin]
    assert {m["id"]: m["reason"] for m in result["not_matched"]} == {
        enrolled: "rollout_state: 'pending' is not 'enrolled'",
        revoked: "not bound to token_init",
    }
    first, second = result["mails"]
    assert (first["to"], first["subject"], first["body"]) == (
        "alice@example.org",
        "CRT0000AB12 is pending",
        "Dear Alice",
    )
    assert "Message-ID:" in first["message"]
    assert second["to"] == "root@example.org"
    assert smtp_sink.count() == 0

    # A CloudEvent document works too; a user without mail shows the problem.
    result = value(
        await admin.post(
            "/event/test",
            json={
                "type": "token_init",
                "data": {"rollout_state": "pending", "username": "zed", "realm": "corp"},
            },
        )
    )
    assert result["mails"][0]["problem"] == "token owner zed@corp is not a known user"
    assert error(await admin.post("/event/test", json={"event": "x", "data": {}}), 400).startswith(
        "event:"
    )
    assert error(await admin.post("/event/test", json={"event": "token_init"}), 400).startswith(
        "data:"
    )


async def test_dry_run_reads_token_info_and_the_owner_from_the_database(
    stack: Stack, admin: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    await add_user(admin)
    await add_smtp_server(admin, "mail", smtp_sink)
    answer = await admin.post(
        "/token/init",
        json={"type": "certificate", "request": make_csr(), "ca": "localca", "user": "alice"},
    )
    serial = value(answer) and answer.json()["detail"]["serial"]
    # Handlers of an event this token never raises: the token_init event of the enrollment
    # may still be on its way to the notifier, and must not mail.
    matching = await add_handler(
        admin,
        OWNER_OPTIONS,
        name="matching",
        event="token_revoke",
        conditions={"tokeninfo": "enrolled_by==admin:admin", "user_info": "surname==Liddell"},
    )
    failing = await add_handler(
        admin,
        OWNER_OPTIONS,
        name="failing",
        event="token_revoke",
        conditions={"user_info": "givenname==Bob"},
    )
    data = {"serial": serial, "rollout_state": "enrolled", "username": "alice", "realm": "corp"}
    dry_run = {"event": "token_revoke", "data": data}
    result = value(await admin.post("/event/test", json=dry_run))
    assert [m["id"] for m in result["matched"]] == [matching]
    assert result["not_matched"] == [
        {
            "id": failing,
            "name": "failing",
            "reason": "user_info: givenname='Alice' does not satisfy ==Bob",
        }
    ]
    assert smtp_sink.count() == 0


async def test_deliveries_api_errors(admin: httpx.AsyncClient) -> None:
    assert error(await admin.get("/event/deliveries/7"), 404).startswith("delivery:")
    assert error(await admin.post("/event/deliveries/7/retry"), 404).startswith("delivery:")
    assert error(await admin.get("/event/deliveries", params={"status": "lost"}), 400)
    assert value(await admin.get("/event/deliveries"))["deliveries"] == []
