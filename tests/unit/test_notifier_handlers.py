"""Handler definitions checked at save time: events, module, options, templates."""

from __future__ import annotations

import pytest

from shared.notification.handlers import (
    HandlerError,
    check_conditions,
    check_events,
    check_module,
    check_options,
)
from shared.notification.templates import TemplateError, check_template, render, tags_in


def test_events_as_list_or_comma_separated() -> None:
    assert check_events("token_init, token_update,token_init") == ["token_init", "token_update"]
    assert check_events(["token_revoke"]) == ["token_revoke"]


@pytest.mark.parametrize("value", ["token_sign", "", [], "token_init,,"])
def test_unknown_or_missing_events_are_refused(value: str | list[str]) -> None:
    with pytest.raises(HandlerError) as caught:
        check_events(value)
    assert caught.value.field == "event"


@pytest.mark.parametrize(
    ("module", "action", "position", "field"),
    [
        ("Token", "sendmail", "post", "handlermodule"),
        ("UserNotification", "sendsms", "post", "action"),
        ("UserNotification", "sendmail", "pre", "position"),
    ],
)
def test_only_usernotification_sendmail_post(
    module: str, action: str, position: str, field: str
) -> None:
    check_module("UserNotification", "sendmail", "post")
    with pytest.raises(HandlerError) as caught:
        check_module(module, action, position)
    assert caught.value.field == field


def test_conditions_errors_name_the_condition() -> None:
    with pytest.raises(HandlerError) as caught:
        check_conditions({"rollout_state": "soon"})
    assert caught.value.field == "conditions.rollout_state"


def test_options_are_normalized() -> None:
    options = check_options(
        {
            "To": "email",
            "To email": " Bob@Example.ORG , carol@example.org",
            "subject": "  {serial}  ",
            "mimetype": "html",
            "reply_to": "help@example.org",
            "emailconfig": "",
        }
    )
    assert options == {
        "To": "email",
        "To email": "Bob@example.org,carol@example.org",
        "subject": "  {serial}  ",
        "mimetype": "html",
        "reply_to": "help@example.org",
    }


@pytest.mark.parametrize(
    ("options", "field", "reason"),
    [
        ({}, "option.To", "required"),
        ({"To": "everybody"}, "option.To", "'everybody' is not one of"),
        ({"To": "email"}, "option.To email", "required with To=email"),
        ({"To": "internal admin"}, "option.To internal admin", "required"),
        ({"To": "email", "To email": "not-an-address"}, "option.To email", "'not-an-address'"),
        ({"To": "tokenowner", "colour": "red"}, "option.colour", "unknown option"),
        ({"To": "tokenowner", "subject": "{secret}"}, "option.subject", "unknown tag {secret}"),
        ({"To": "tokenowner", "body": "Hi {user"}, "option.body", "malformed template"),
        ({"To": "tokenowner", "body": "{serial:>20}"}, "option.body", "format specs"),
        ({"To": "tokenowner", "body": "{serial!r}"}, "option.body", "format specs"),
        ({"To": "tokenowner", "body": "{user.__class__}"}, "option.body", "unknown tag"),
        ({"To": "tokenowner", "mimetype": "pdf"}, "option.mimetype", "'pdf' is not one of"),
        ({"To": "tokenowner", "reply_to": "a@b@c"}, "option.reply_to", "not an e-mail address"),
        ({"To": "tokenowner", "emailconfig": "bad name"}, "option.emailconfig", "not a valid"),
        ({"To": "tokenowner", "subject": 5}, "option.subject", "must be a string"),
        ({"To": "tokenowner", "subject": "x" * 1000}, "option.subject", "longer than 998"),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(HandlerError) as caught:
        check_options(options)
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_templates() -> None:
    assert tags_in("{serial} for {username} {{literal}}") == {"serial", "username"}
    assert render("{{x}} {serial}", {"serial": "CRT1"}) == "{x} CRT1"
    assert render("<b>{username}</b>", {"username": "<i>&"}, html_body=True) == (
        "<b>&lt;i&gt;&amp;</b>"
    )
    assert render("{username}", {"username": "<i>"}) == "<i>"
    with pytest.raises(TemplateError):
        check_template("}")
    with pytest.raises(TemplateError):
        check_template("{}")
