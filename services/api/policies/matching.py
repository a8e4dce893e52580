"""Which policies apply to whom, and which value of an action wins (pure, privacyIDEA's rules).

A policy applies when it is active, of the scope asked for, and each of its lists admits
the subject: ``realm`` the owner's realm, ``user`` the owner's login, ``adminrealm`` (admin
scope only) the calling admin's realm. An empty list admits everyone; ``*`` admits anyone
not excluded; ``-name`` / ``!name`` excludes. A list holding only exclusions admits
everyone else. The empty realm of internal admins is admitted only by an empty list.

Among the applying policies that set an action, the lowest ``priority`` number wins; two
of them at that priority with different values are a conflict, refused with 403.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from services.api.errors import Forbidden
from services.api.policies.catalog import ActionValue, Scope
from services.api.policies.spec import PolicySpec

_EXCLUDE = ("-", "!")


@dataclass(frozen=True)
class Subject:
    """Whom a decision is about: the token owner and, for admin scope, the admin's realm."""

    username: str
    realm: str
    adminrealm: str = ""


def admits(entries: Sequence[str], value: str) -> bool:
    """Whether a realm or user list admits *value* (see the module docstring)."""
    if not entries:
        return True
    if not value:
        return False
    excluded = {e[1:] for e in entries if e.startswith(_EXCLUDE)}
    if value in excluded:
        return False
    included = [e for e in entries if not e.startswith(_EXCLUDE)]
    return not included or "*" in included or value in included


def applies(policy: PolicySpec, scope: Scope, subject: Subject, *, user: bool = True) -> bool:
    """Whether *policy* applies in *scope* to *subject* (its user list ignored if not *user*)."""
    if not policy.active or policy.scope != scope:
        return False
    if not admits(policy.realm, subject.realm):
        return False
    if user and not admits(policy.user, subject.username):
        return False
    return scope != Scope.ADMIN or admits(policy.adminrealm, subject.adminrealm)


def matching(policies: Iterable[PolicySpec], scope: Scope, subject: Subject) -> list[PolicySpec]:
    """The policies that apply in *scope* to *subject*."""
    return [p for p in policies if applies(p, scope, subject)]


def action_value(policies: Iterable[PolicySpec], action: str) -> ActionValue | None:
    """The winning value of *action* among applying *policies*; None when none sets it."""
    setting = [p for p in policies if action in p.action]
    if not setting:
        return None
    best = min(p.priority for p in setting)
    winners = sorted((p for p in setting if p.priority == best), key=lambda p: p.name)
    values = {_key(p.action[action]) for p in winners}
    if len(values) > 1:
        listed = ", ".join(f"{p.name} ({p.action[action]})" for p in winners)
        raise Forbidden(
            f"policy: conflicting values for {action} in policies {listed} at priority {best}"
        )
    return winners[0].action[action]


def _key(value: ActionValue) -> tuple[str, str]:
    # True == 1 in Python: compare with the type so that a flag never equals a count.
    return type(value).__name__, str(value)
