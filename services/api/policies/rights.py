"""What a caller may do, as privacyIDEA's login answer lists it: ``rights`` and ``menus`` (pure).

Rights use privacyIDEA's action names. The certificate actions (:class:`Action`) follow the
policies as the routes do; the other rights name what certtoken's admin routes allow every
administrator, since no policy restricts them.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.api.context import ApiContext
from services.api.errors import Forbidden
from services.api.policies.catalog import Action, Scope
from services.api.policies.decisions import refusal
from services.api.policies.matching import admits
from services.api.policies.spec import PolicySpec
from services.api.policies.store import current_policies
from shared.security import Identity

# privacyIDEA's rights for the admin routes certtoken has, which every administrator may use.
ADMIN_ROUTE_RIGHTS = (
    "tokenlist",
    "userlist",
    "adduser",
    "deleteuser",
    "caconnectorread",
    "caconnectorwrite",
    "caconnectordelete",
    "policyread",
    "policywrite",
    "policydelete",
    "eventhandling_read",
    "eventhandling_write",
    "smtpserver_read",
    "smtpserver_write",
    "auditlog",
)

# privacyIDEA's main menus, in its order, and the rights that show each.
MENUS: tuple[tuple[str, frozenset[str]], ...] = (
    ("users", frozenset({"userlist", "adduser", "deleteuser"})),
    ("tokens", frozenset({"tokenlist", *(a.value for a in Action)})),
    ("audit", frozenset({"auditlog"})),
    (
        "config",
        frozenset(
            {
                "caconnectorread",
                "caconnectorwrite",
                "policyread",
                "policywrite",
                "eventhandling_read",
                "smtpserver_read",
            }
        ),
    ),
)


def rights(policies: Sequence[PolicySpec], caller: Identity) -> list[str]:
    """The actions *caller* may take, in a stable order."""
    if caller.role == "admin":
        return [a.value for a in Action if _admin_may(policies, caller, a)] + list(
            ADMIN_ROUTE_RIGHTS
        )
    return [a.value for a in Action if _user_may(policies, caller, a)]


async def rights_of(ctx: ApiContext, caller: Identity) -> list[str]:
    """The actions *caller* may take under the current policies."""
    return rights(await current_policies(ctx.db), caller)


def menus(granted: Sequence[str]) -> list[str]:
    """The main menus a UI shows for the *granted* rights."""
    held = set(granted)
    return [name for name, shown_by in MENUS if held & shown_by]


def _admin_may(policies: Sequence[PolicySpec], caller: Identity, action: Action) -> bool:
    """As privacyIDEA decides at login: any admin policy of the admin's realm granting it."""
    scoped = [
        p
        for p in policies
        if p.active and p.scope == Scope.ADMIN and admits(p.adminrealm, caller.realm)
    ]
    if not any(p.active and p.scope == Scope.ADMIN for p in policies):
        return True
    return any(p.action.get(action.value) is True for p in scoped)


def _user_may(policies: Sequence[PolicySpec], caller: Identity, action: Action) -> bool:
    """Whether the routes would let *caller* take *action* on their own token."""
    try:
        return refusal(policies, caller, action, (caller.username, caller.realm)) is None
    except Forbidden:  # policies in conflict: the route would refuse too
        return False
