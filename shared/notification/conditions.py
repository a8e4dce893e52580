"""Conditions of event handlers: checked when saved, evaluated against an event. Pure code."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.echo import echo
from shared.notification.vocabulary import (
    CONDITIONS,
    ROLLOUT_STATES,
    TOKEN_TYPES,
    USER_ATTRIBUTES,
)

REALM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,119}$")
_COMPARISON = re.compile(r"^\s*([A-Za-z0-9_.-]{1,64})\s*(==|>|<)\s*(\S(?:.*\S)?)\s*$", re.DOTALL)
_MAX_VALUE = 1024
MAX_THRESHOLD_DAYS = 3650
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


class ConditionError(ValueError):
    """A condition is unknown or its value malformed."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


@dataclass(frozen=True)
class Facts:
    """What conditions are evaluated against: the event, its token and the token owner."""

    serial: str = ""
    tokentype: str = ""
    rollout_state: str = ""
    realm: str = ""
    tokenrealms: tuple[str, ...] = ()
    has_owner: bool = False
    tokeninfo: Mapping[str, Any] = field(default_factory=dict)
    result_value: str = ""
    result_status: str = ""
    detail_error_message: str = ""
    user_info: Mapping[str, Any] = field(default_factory=dict)
    threshold_days: str = ""  # expiry notices only


def normalize_conditions(raw: Mapping[str, Any]) -> dict[str, str]:
    """The conditions with canonical values; ConditionError for the first bad one.

    An empty value means "not set", as privacyIDEA's UI sends it, and is dropped.
    """
    normalized: dict[str, str] = {}
    for name, value in raw.items():
        if name not in CONDITIONS:
            raise ConditionError(name, f"unknown condition; known: {', '.join(CONDITIONS)}")
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if not isinstance(value, str | bool | int):
            raise ConditionError(name, "must be a string")
        normalized[name] = _CHECKS[name](name, value)
    return normalized


def first_failure(conditions: Mapping[str, str], facts: Facts) -> str | None:
    """Why the conditions do not all hold (the first that fails), or None when they do."""
    for name in CONDITIONS:
        if name in conditions:
            reason = _MATCHERS[name](conditions[name], facts)
            if reason is not None:
                return f"{name}: {reason}"
    return None


def truth(value: object) -> str:
    """``True`` or ``False`` as privacyIDEA writes them; "" for anything absent."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return str(value)
    text = str(value).strip()
    if text.lower() in _TRUE:
        return "True"
    if text.lower() in _FALSE:
        return "False"
    return text


# --- checks at save time ----------------------------------------------------------------------


def _text(name: str, value: str | bool | int) -> str:
    text = str(value).strip()
    if len(text) > _MAX_VALUE:
        raise ConditionError(name, f"longer than {_MAX_VALUE} characters")
    return text


def _one_of(choices: tuple[str, ...]) -> Callable[[str, str | bool | int], str]:
    def check(name: str, value: str | bool | int) -> str:
        text = _text(name, value)
        if text not in choices:
            raise ConditionError(name, f"{echo(text)} is not one of {', '.join(choices)}")
        return text

    return check


def _list_of(choices: tuple[str, ...] | None) -> Callable[[str, str | bool | int], str]:
    def check(name: str, value: str | bool | int) -> str:
        items = [item.strip() for item in _text(name, value).split(",")]
        for item in items:
            if choices is not None and item not in choices:
                raise ConditionError(name, f"{echo(item)} is not one of {', '.join(choices)}")
            if choices is None and not REALM.match(item):
                raise ConditionError(name, f"{echo(item)} is not a realm name")
        return ",".join(items)

    return check


def _realm(name: str, value: str | bool | int) -> str:
    text = _text(name, value)
    if not REALM.match(text):
        raise ConditionError(name, f"{echo(text)} is not a realm name")
    return text


def _regexp(name: str, value: str | bool | int) -> str:
    text = _text(name, value)
    try:
        re.compile(text)
    except re.error as exc:
        raise ConditionError(name, f"not a regular expression ({exc})") from None
    return text


def _boolean(name: str, value: str | bool | int) -> str:
    text = truth(value)
    if text not in ("True", "False"):
        raise ConditionError(name, f"{echo(value)} is neither True nor False")
    return text


def threshold_days(name: str, value: str | bool | int) -> str:
    """A threshold in whole days, 1 to MAX_THRESHOLD_DAYS, as its decimal text."""
    text = _text(name, value)
    if isinstance(value, bool) or not text.isdigit() or not 1 <= int(text) <= MAX_THRESHOLD_DAYS:
        raise ConditionError(
            name, f"{echo(text)} is not a whole number of days from 1 to {MAX_THRESHOLD_DAYS}"
        )
    return str(int(text))


def _comparison(keys: tuple[str, ...] | None) -> Callable[[str, str | bool | int], str]:
    def check(name: str, value: str | bool | int) -> str:
        parsed = parse_comparison(_text(name, value))
        if parsed is None:
            raise ConditionError(
                name, f"{echo(value)} is not of the form key==value, key>n or key<n"
            )
        key, op, expected = parsed
        if keys is not None and key not in keys:
            raise ConditionError(name, f"unknown attribute {echo(key)}; known: {', '.join(keys)}")
        return f"{key}{op}{expected}"

    return check


def parse_comparison(text: str) -> tuple[str, str, str] | None:
    """``key==value`` (or ``>``, ``<``) split in three; None when it is not one."""
    match = _COMPARISON.match(text)
    if match is None:
        return None
    key, op, expected = match.groups()
    return key, op, expected


_CHECKS: dict[str, Callable[[str, str | bool | int], str]] = {
    "rollout_state": _one_of(ROLLOUT_STATES),
    "tokentype": _list_of(TOKEN_TYPES),
    "realm": _realm,
    "tokenrealm": _list_of(None),
    "serial": _regexp,
    "token_has_owner": _boolean,
    "tokeninfo": _comparison(None),
    "result_value": _boolean,
    "result_status": _boolean,
    "detail_error_message": _regexp,
    "threshold_days": threshold_days,
    "user_info": _comparison(USER_ATTRIBUTES),
}


# --- evaluation ---------------------------------------------------------------------------


def compare(actual: object, op: str, expected: str) -> bool:
    """privacyIDEA's comparison: as integers, else as ISO dates, else as text."""
    if actual is None:
        return False
    left = truth(actual) if isinstance(actual, bool) else str(actual)
    for convert in (_as_int, _as_datetime):
        a, b = convert(left), convert(expected)
        if a is not None and b is not None:
            return _apply(a, op, b)
    return _apply(left, op, expected)


def _apply(a: Any, op: str, b: Any) -> bool:
    if op == "==":
        return bool(a == b)
    if op == ">":
        return bool(a > b)
    return bool(a < b)


def _as_int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def _as_datetime(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _equal(attribute: str) -> Callable[[str, Facts], str | None]:
    def match(expected: str, facts: Facts) -> str | None:
        actual = getattr(facts, attribute)
        return None if actual == expected else f"{actual!r} is not {expected!r}"

    return match


def _tokentype(expected: str, facts: Facts) -> str | None:
    allowed = expected.split(",")
    return None if facts.tokentype in allowed else f"{facts.tokentype!r} is not in {allowed}"


def _tokenrealm(expected: str, facts: Facts) -> str | None:
    allowed = expected.split(",")
    # As privacyIDEA: a token without a realm cannot be checked, so the condition holds.
    if not facts.tokenrealms or any(r in allowed for r in facts.tokenrealms):
        return None
    return f"{list(facts.tokenrealms)} has none of {allowed}"


def _serial(expected: str, facts: Facts) -> str | None:
    if not facts.serial or re.match(expected, facts.serial):
        return None
    return f"{facts.serial!r} does not match {expected!r}"


def _has_owner(expected: str, facts: Facts) -> str | None:
    if facts.has_owner == (expected == "True"):
        return None
    return "the token has an owner" if facts.has_owner else "the token has no owner"


def _compared(attribute: str) -> Callable[[str, Facts], str | None]:
    def match(expected: str, facts: Facts) -> str | None:
        parsed = parse_comparison(expected)
        assert parsed is not None  # normalized at save time
        key, op, value = parsed
        actual = getattr(facts, attribute).get(key)
        if compare(actual, op, value):
            return None
        return f"{key}={actual!r} does not satisfy {op}{value}"

    return match


def _error_message(expected: str, facts: Facts) -> str | None:
    if re.search(expected, facts.detail_error_message):
        return None
    return f"{facts.detail_error_message!r} does not match {expected!r}"


def _threshold(expected: str, facts: Facts) -> str | None:
    if facts.threshold_days == expected:
        return None
    if not facts.threshold_days:
        return "the event is no expiry notice"
    return f"the notice is for {facts.threshold_days} days, not {expected}"


_MATCHERS: dict[str, Callable[[str, Facts], str | None]] = {
    "rollout_state": _equal("rollout_state"),
    "tokentype": _tokentype,
    "realm": _equal("realm"),
    "tokenrealm": _tokenrealm,
    "serial": _serial,
    "token_has_owner": _has_owner,
    "tokeninfo": _compared("tokeninfo"),
    "result_value": _equal("result_value"),
    "result_status": _equal("result_status"),
    "detail_error_message": _error_message,
    "threshold_days": _threshold,
    "user_info": _compared("user_info"),
}
