"""Which policies apply to whom, priorities and conflicts."""

from __future__ import annotations

from typing import Any

import pytest

from services.api.errors import Forbidden
from services.api.policies.catalog import Scope
from services.api.policies.matching import Subject, action_value, admits, applies, matching
from services.api.policies.spec import PolicySpec

ALICE = Subject("alice", "corp")


def _policy(name: str = "p", scope: Scope = Scope.ENROLL, **fields: Any) -> PolicySpec:
    fields.setdefault("action", {"max_token_per_user": 1})
    for key in ("realm", "user", "adminrealm"):
        if key in fields:
            fields[key] = tuple(fields[key])
    return PolicySpec(name=name, scope=scope, **fields)


@pytest.mark.parametrize(
    ("entries", "value", "expected"),
    [
        ([], "alice", True),
        ([], "", True),
        (["alice"], "alice", True),
        (["alice", "bob"], "bob", True),
        (["alice"], "carol", False),
        (["*"], "carol", True),
        (["*", "-bob"], "bob", False),
        (["*", "!bob"], "bob", False),
        (["*", "-bob"], "alice", True),
        (["-bob"], "alice", True),
        (["!bob"], "bob", False),
        (["alice", "-alice"], "alice", False),
        (["alice"], "", False),
        (["*"], "", False),
    ],
)
def test_admits(entries: list[str], value: str, expected: bool) -> None:
    assert admits(entries, value) is expected


def test_applies_by_scope_activity_realm_and_user() -> None:
    assert applies(_policy(), Scope.ENROLL, ALICE)
    assert not applies(_policy(), Scope.USER, ALICE)
    assert not applies(_policy(active=False), Scope.ENROLL, ALICE)
    assert applies(_policy(realm=["corp"]), Scope.ENROLL, ALICE)
    assert not applies(_policy(realm=["other"]), Scope.ENROLL, ALICE)
    assert not applies(_policy(realm=["corp"], user=["bob"]), Scope.ENROLL, ALICE)
    assert applies(_policy(realm=["corp"], user=["bob"]), Scope.ENROLL, ALICE, user=False)
    assert not applies(_policy(user=["*", "-alice"]), Scope.ENROLL, ALICE)


def test_adminrealm_counts_in_admin_scope_only() -> None:
    policy = _policy(scope=Scope.ADMIN, action={"revoke": True}, adminrealm=["helpdesk"])
    assert applies(policy, Scope.ADMIN, Subject("alice", "corp", "helpdesk"))
    assert not applies(policy, Scope.ADMIN, Subject("alice", "corp", "sales"))
    # Internal admins have no realm: a policy naming admin realms never matches them.
    assert not applies(policy, Scope.ADMIN, Subject("alice", "corp", ""))
    open_policy = _policy(scope=Scope.ADMIN, action={"revoke": True})
    assert applies(open_policy, Scope.ADMIN, Subject("alice", "corp", ""))


def test_best_priority_wins_and_unset_is_none() -> None:
    policies = [
        _policy("general", action={"certificate_ca_connector": "a"}, priority=5),
        _policy("specific", action={"certificate_ca_connector": "b"}, priority=2),
        _policy("other", action={"max_token_per_user": 4}, priority=1),
    ]
    assert action_value(policies, "certificate_ca_connector") == "b"
    assert action_value(policies, "max_token_per_user") == 4
    assert action_value(policies, "certificate_template") is None
    assert action_value([], "certificate_template") is None


def test_same_value_at_same_priority_is_no_conflict() -> None:
    policies = [
        _policy("a", action={"certificate_ca_connector": "x"}),
        _policy("b", action={"certificate_ca_connector": "x"}),
    ]
    assert action_value(policies, "certificate_ca_connector") == "x"


def test_different_values_at_the_best_priority_conflict() -> None:
    policies = [
        _policy("zeta", action={"certificate_ca_connector": "y"}, priority=3),
        _policy("alpha", action={"certificate_ca_connector": "x"}, priority=3),
        _policy("worse", action={"certificate_ca_connector": "z"}, priority=4),
    ]
    with pytest.raises(Forbidden) as caught:
        action_value(policies, "certificate_ca_connector")
    assert caught.value.message == (
        "policy: conflicting values for certificate_ca_connector in policies "
        "alpha (x), zeta (y) at priority 3"
    )
    # A better priority settles it.
    better = _policy("best", action={"certificate_ca_connector": "x"}, priority=1)
    assert action_value([*policies, better], "certificate_ca_connector") == "x"


def test_flag_and_count_do_not_compare_equal() -> None:
    policies = [
        _policy("a", Scope.USER, action={"revoke": True}),
        _policy("b", Scope.USER, action={"revoke": False}),
    ]
    with pytest.raises(Forbidden):
        action_value(policies, "revoke")


def test_matching_filters_by_subject() -> None:
    policies = [
        _policy("corp", realm=["corp"]),
        _policy("other", realm=["other"]),
        _policy("not-alice", user=["*", "!alice"]),
        _policy("off", active=False),
        _policy("user-scope", Scope.USER, action={"revoke": True}),
    ]
    assert [p.name for p in matching(policies, Scope.ENROLL, ALICE)] == ["corp"]
    bob = Subject("bob", "other")
    assert [p.name for p in matching(policies, Scope.ENROLL, bob)] == ["other", "not-alice"]
