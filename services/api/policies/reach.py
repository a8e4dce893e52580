"""What policies let a caller see or do before any token or user is named (pure).

privacyIDEA checks some actions without an owner (the CA connector names for enrollment) and
shows an administrator only the realms their admin policies cover.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from services.api.policies.catalog import Action, Scope
from services.api.policies.decisions import refusal
from services.api.policies.matching import admits
from services.api.policies.spec import PolicySpec
from shared.security import Identity


def _admin_policies(policies: Iterable[PolicySpec], caller: Identity) -> list[PolicySpec]:
    """The active admin policies that match *caller*'s admin realm."""
    return [
        p
        for p in policies
        if p.active and p.scope == Scope.ADMIN and admits(p.adminrealm, caller.realm)
    ]


def base_refusal(policies: Sequence[PolicySpec], caller: Identity, action: Action) -> str | None:
    """Why *caller* may not take *action* at all (for anyone); None if some policy allows it.

    Admins: allowed while no active admin policy exists, else when one matching their realm
    grants it for any user. Users: as for a token of their own.
    """
    if caller.role != "admin":
        return refusal(policies, caller, action, (caller.username, caller.realm))
    if not any(p.active and p.scope == Scope.ADMIN for p in policies):
        return None
    if any(p.action.get(action.value) is True for p in _admin_policies(policies, caller)):
        return None
    admin = f"{caller.username}@{caller.realm}" if caller.realm else caller.username
    return f"{action.value}: no admin policy allows admin {admin} to take this action"


def visible_realms(
    policies: Sequence[PolicySpec], caller: Identity, realms: Iterable[str]
) -> list[str]:
    """The *realms* an admin sees: all while no admin policy exists, else those theirs cover."""
    if not any(p.active and p.scope == Scope.ADMIN for p in policies):
        return list(realms)
    mine = _admin_policies(policies, caller)
    return [realm for realm in realms if any(admits(p.realm, realm) for p in mine)]
