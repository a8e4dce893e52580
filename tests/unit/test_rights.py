"""The rights and menus of privacyIDEA's login answer, from policies and role (pure)."""

from __future__ import annotations

from services.api.policies.catalog import Scope
from services.api.policies.rights import ADMIN_ROUTE_RIGHTS, menus, rights
from services.api.policies.spec import PolicySpec
from shared.security import Identity

HELPDESK = Identity(username="hd", role="admin", realm="helpdesk")
ROOT = Identity(username="admin", role="admin")


def _admin_policy(name: str, adminrealm: tuple[str, ...], **action: bool) -> PolicySpec:
    return PolicySpec(name=name, scope=Scope.ADMIN, action=action, adminrealm=adminrealm)


def test_admin_policies_grant_to_the_admins_of_their_realm_only() -> None:
    policies = [_admin_policy("hd", ("helpdesk",), revoke=True, delete=False)]
    assert rights(policies, HELPDESK) == ["revoke", *ADMIN_ROUTE_RIGHTS]
    # An internal admin has no realm: a policy naming admin realms does not match it.
    assert rights(policies, ROOT) == list(ADMIN_ROUTE_RIGHTS)
    inactive = [PolicySpec(name="off", scope=Scope.ADMIN, action={"revoke": True}, active=False)]
    assert "enrollCERTIFICATE" in rights(inactive, ROOT)


def test_conflicting_user_policies_grant_nothing() -> None:
    alice = Identity(username="alice", role="user", realm="corp")
    policies = [
        PolicySpec(name="a", scope=Scope.USER, action={"revoke": True}),
        PolicySpec(name="b", scope=Scope.USER, action={"revoke": False}),
    ]
    assert "revoke" not in rights(policies, alice)


def test_menus_follow_the_rights() -> None:
    assert menus([]) == []
    assert menus(["revoke"]) == ["tokens"]
    assert menus(["auditlog", "userlist", "policyread"]) == ["users", "audit", "config"]
