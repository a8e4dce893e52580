"""An event handler's definition, checked as a whole when it is saved. Pure code."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from email_validator import EmailNotValidError, validate_email

from shared.echo import echo
from shared.notification.conditions import ConditionError, normalize_conditions
from shared.notification.templates import TemplateError, check_template
from shared.notification.vocabulary import (
    ACTION_SENDMAIL,
    EVENT_NAMES,
    HANDLER_MODULE,
    MIMETYPES,
    POSITION_POST,
    Option,
    To,
)

IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,119}$")
MAX_SUBJECT = 998
MAX_BODY = 64 * 1024
MAX_RECIPIENTS = 50


class HandlerError(ValueError):
    """A field of a handler definition is unknown or malformed."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class HandlerSpec:
    """A stored, valid event handler, as the notifier and dry runs use it."""

    id: int
    name: str
    events: tuple[str, ...]
    conditions: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)
    active: bool = True
    ordering: int = 0
    position: str = POSITION_POST


def check_events(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """One or more known event names (a list, or privacyIDEA's comma-separated string)."""
    names = value.split(",") if isinstance(value, str) else list(value)
    events: list[str] = []
    for name in (n.strip() for n in names):
        if name not in EVENT_NAMES:
            raise HandlerError(
                "event", f"unknown event {echo(name)}; known: {', '.join(EVENT_NAMES)}"
            )
        if name not in events:
            events.append(name)
    if not events:
        raise HandlerError("event", "name at least one event")
    return events


def check_module(handlermodule: str, action: str, position: str) -> None:
    """Only UserNotification's ``sendmail``, after the event, is served."""
    if handlermodule != HANDLER_MODULE:
        raise HandlerError(
            "handlermodule", f"unknown module {echo(handlermodule)}; known: {HANDLER_MODULE}"
        )
    if action != ACTION_SENDMAIL:
        raise HandlerError("action", f"unknown action {echo(action)}; known: {ACTION_SENDMAIL}")
    if position != POSITION_POST:
        raise HandlerError(
            "position",
            f"{echo(position)} is not served: events are announced after the change (post)",
        )


def check_conditions(raw: Mapping[str, Any]) -> dict[str, str]:
    """Conditions with canonical values."""
    try:
        return normalize_conditions(raw)
    except ConditionError as exc:
        raise HandlerError(f"conditions.{exc.name}", exc.reason) from None


def check_options(raw: Mapping[str, Any]) -> dict[str, str]:
    """The ``sendmail`` options with canonical values; empty values are dropped (not set)."""
    known = {o.value for o in Option}
    options: dict[str, str] = {}
    for key, value in raw.items():
        name = f"option.{key}"
        if key not in known:
            raise HandlerError(name, f"unknown option; known: {', '.join(sorted(known))}")
        if value is None:
            continue
        if not isinstance(value, str):
            raise HandlerError(name, "must be a string")
        if value.strip():
            options[key] = value if key in (Option.SUBJECT, Option.BODY) else value.strip()
    to = options.get(Option.TO)
    if to is None:
        raise HandlerError(f"option.{Option.TO}", f"required; one of {', '.join(To)}")
    if to not in {t.value for t in To}:
        raise HandlerError(f"option.{Option.TO}", f"{echo(to)} is not one of {', '.join(To)}")
    if to == To.EMAIL and Option.TO_EMAIL not in options:
        raise HandlerError(f"option.{Option.TO_EMAIL}", "required with To=email")
    if to == To.INTERNAL_ADMIN and Option.TO_INTERNAL_ADMIN not in options:
        raise HandlerError(f"option.{Option.TO_INTERNAL_ADMIN}", "required with To=internal admin")
    for key, check in _OPTION_CHECKS.items():
        if key in options:
            try:
                options[key] = check(options[key])
            except ValueError as exc:
                raise HandlerError(f"option.{key}", str(exc)) from None
    return options


def address(text: str) -> str:
    """One e-mail address, normalized; ValueError when it is not one."""
    try:
        return validate_email(text.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"{echo(text)} is not an e-mail address ({exc})") from None


def addresses(text: str) -> list[str]:
    """A comma-separated list of e-mail addresses, normalized."""
    found = [address(part) for part in text.split(",") if part.strip()]
    if not found:
        raise ValueError("name at least one address")
    if len(found) > MAX_RECIPIENTS:
        raise ValueError(f"at most {MAX_RECIPIENTS} addresses")
    return found


def _identifier(text: str) -> str:
    if not IDENTIFIER.match(text):
        raise ValueError(f"{echo(text)} is not a valid name")
    return text


def _template(limit: int) -> Any:
    def check(text: str) -> str:
        if len(text) > limit:
            raise ValueError(f"longer than {limit} characters")
        try:
            check_template(text)
        except TemplateError as exc:
            raise ValueError(str(exc)) from None
        return text

    return check


def _mimetype(text: str) -> str:
    if text not in MIMETYPES:
        raise ValueError(f"{echo(text)} is not one of {', '.join(MIMETYPES)}")
    return text


_OPTION_CHECKS: dict[str, Any] = {
    Option.EMAILCONFIG: _identifier,
    Option.TO_EMAIL: lambda text: ",".join(addresses(text)),
    Option.TO_INTERNAL_ADMIN: _identifier,
    Option.SUBJECT: _template(MAX_SUBJECT),
    Option.BODY: _template(MAX_BODY),
    Option.MIMETYPE: _mimetype,
    Option.REPLY_TO: address,
}
