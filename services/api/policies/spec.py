"""A policy as certtoken keeps it, read from privacyIDEA's request fields (pure)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.api.policies.catalog import (
    MAX_LIMIT,
    NAME,
    ActionValue,
    Scope,
    read_action,
    read_count,
    read_flag,
    scope_named,
)
from shared.echo import echo

# Realm and user entries: a name, "*" for any, or a name after "-" / "!" to exclude it.
REALM_ENTRY = r"^[-!]?[A-Za-z0-9][A-Za-z0-9_.-]{0,119}$"
USER_ENTRY = r"^[-!]?[A-Za-z0-9][A-Za-z0-9_.@+-]{0,119}$"
MAX_ENTRIES = 100
_FIELDS = frozenset(
    {"name", "scope", "action", "realm", "user", "adminrealm", "active", "priority"}
)


@dataclass(frozen=True)
class PolicySpec:
    """One policy: whom it matches and the values of the actions it sets."""

    name: str
    scope: Scope
    action: Mapping[str, ActionValue] = field(default_factory=dict)
    realm: tuple[str, ...] = ()
    user: tuple[str, ...] = ()
    adminrealm: tuple[str, ...] = ()
    active: bool = True
    priority: int = 1


# privacyIDEA's policy fields certtoken does not match on (parse_policy refuses them when set),
# shown as privacyIDEA shows them unset so that its clients find every key.
UNMATCHED_FIELDS: Mapping[str, Any] = {
    "adminuser": [],
    "check_all_resolvers": False,
    "client": [],
    "conditions": [],
    "description": None,
    "pinode": [],
    "resolver": [],
    "time": "",
    "user_agents": [],
    "user_case_insensitive": False,
}


def policy_view(policy: PolicySpec) -> dict[str, Any]:
    """A policy as the API shows it: privacyIDEA's keys, the unmatched ones unset."""
    return {
        **{
            key: list(value) if isinstance(value, list) else value
            for key, value in UNMATCHED_FIELDS.items()
        },
        "name": policy.name,
        "scope": policy.scope.value,
        # privacyIDEA shows a value as the text after "="; plain actions as true.
        "action": {k: v if isinstance(v, bool) else str(v) for k, v in policy.action.items()},
        "realm": list(policy.realm),
        "user": list(policy.user),
        "adminrealm": list(policy.adminrealm),
        "active": policy.active,
        "priority": policy.priority,
    }


def parse_policy(name: str, params: Mapping[str, Any]) -> PolicySpec:
    """The policy *name* from request fields; ValueError naming the first bad field.

    Fields privacyIDEA knows but certtoken does not match on (client, time, resolver, ...)
    are refused when set: silently dropping one would make the policy apply more widely.
    """
    if not re.fullmatch(NAME, name):
        raise ValueError(f"name: must match {NAME}")
    if params.get("name") not in (None, "", name):
        raise ValueError(f"name: the body names {echo(params['name'])}, the path {echo(name)}")
    for key, value in params.items():
        if key not in _FIELDS and value not in (None, "", [], {}, False):
            raise ValueError(
                f"{key}: not supported; certtoken policies match by realm, user and adminrealm"
            )
    scope = parse_scope(params.get("scope"))
    adminrealm = parse_list("adminrealm", params.get("adminrealm"), REALM_ENTRY)
    if adminrealm and scope != Scope.ADMIN:
        raise ValueError("adminrealm: only admin-scope policies match an admin realm")
    try:
        active = True if params.get("active") in (None, "") else read_flag(params["active"])
    except ValueError as exc:
        raise ValueError(f"active: {exc}") from None
    try:
        raw_priority = params.get("priority")
        priority = 1 if raw_priority in (None, "") else read_count(raw_priority)
    except ValueError:
        raise ValueError(f"priority: must be a whole number from 1 to {MAX_LIMIT}") from None
    return PolicySpec(
        name=name,
        scope=scope,
        action=parse_actions(scope, params.get("action")),
        realm=parse_list("realm", params.get("realm"), REALM_ENTRY),
        user=parse_list("user", params.get("user"), USER_ENTRY),
        adminrealm=adminrealm,
        active=active,
        priority=priority,
    )


def parse_scope(raw: object) -> Scope:
    """A scope by its name."""
    known = ", ".join(s.value for s in Scope)
    if raw in (None, ""):
        raise ValueError(f"scope: required (one of {known})")
    try:
        return scope_named(str(raw).strip())
    except ValueError:
        raise ValueError(f"scope: unknown scope {echo(raw)}; known: {known}") from None


def parse_actions(scope: Scope, raw: object) -> dict[str, ActionValue]:
    """Actions from ``"a=1, b"`` (a bare name means True) or a JSON object."""
    if isinstance(raw, str):
        pairs: list[tuple[str, object]] = []
        for entry in (e.strip() for e in raw.split(",")):
            if not entry:
                continue
            key, eq, text = entry.partition("=")
            pairs.append((key.strip(), text.strip() if eq else True))
    elif isinstance(raw, dict):
        pairs = [(str(k).strip(), v) for k, v in raw.items()]
    elif raw is None:
        pairs = []
    else:
        raise ValueError("action: must be a string of name=value entries or an object")
    if not pairs:
        raise ValueError("action: required (at least one action)")
    actions: dict[str, ActionValue] = {}
    for key, value in pairs:
        if key in actions:
            raise ValueError(f"action: {echo(key)} is given twice")
        if value is None or value == "":
            raise ValueError(f"action: {key} needs a value (name=value)")
        actions[key] = read_action(scope, key, value)
    return actions


def parse_list(field_name: str, raw: object, pattern: str) -> tuple[str, ...]:
    """Entries from a comma-separated string or a list; ``*`` or names matching *pattern*."""
    if raw is None:
        items: list[object] = []
    elif isinstance(raw, str):
        items = list(raw.split(","))
    elif isinstance(raw, list):
        items = list(raw)
    else:
        raise ValueError(f"{field_name}: must be a comma-separated string or a list")
    entries: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{field_name}: entries must be strings, not {echo(item)}")
        entry = item.strip()
        if not entry:
            continue
        if entry != "*" and not re.fullmatch(pattern, entry):
            raise ValueError(f"{field_name}: {echo(entry)} is not a valid entry (a name or '*')")
        if entry not in entries:
            entries.append(entry)
    if len(entries) > MAX_ENTRIES:
        raise ValueError(f"{field_name}: at most {MAX_ENTRIES} entries")
    return tuple(entries)
