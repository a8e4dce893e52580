"""What policies allow before an owner is named: the base enroll check and realms shown."""

from __future__ import annotations

from services.api.policies.catalog import Action, Scope
from services.api.policies.reach import base_refusal, visible_realms
from services.api.policies.spec import PolicySpec
from shared.security import Identity

ADMIN = Identity("admin", "admin")
HELPDESK = Identity("carol", "admin", "helpdesk")
ALICE = Identity("alice", "user", "corp")
REALMS = ["corp", "other", "third"]


def _admin(name: str, **fields: object) -> PolicySpec:
    return PolicySpec(name=name, scope=Scope.ADMIN, **fields)  # type: ignore[arg-type]


def test_admins_may_enroll_until_an_admin_policy_exists() -> None:
    assert base_refusal([], ADMIN, Action.ENROLL) is None
    grant = _admin("g", action={"enrollCERTIFICATE": True}, adminrealm=("helpdesk",))
    assert base_refusal([grant], HELPDESK, Action.ENROLL) is None
    # The realm list does not matter without an owner; the admin realm does.
    narrow = _admin("n", action={"enrollCERTIFICATE": True}, realm=("corp",))
    assert base_refusal([narrow], ADMIN, Action.ENROLL) is None
    refused = base_refusal([grant], ADMIN, Action.ENROLL)
    assert refused == "enrollCERTIFICATE: no admin policy allows admin admin to take this action"
    revoke_only = _admin("r", action={"revoke": True})
    assert base_refusal([revoke_only], ADMIN, Action.ENROLL) is not None
    inactive = _admin("i", action={"revoke": True}, active=False)
    assert base_refusal([inactive], ADMIN, Action.ENROLL) is None


def test_users_may_enroll_as_for_their_own_token() -> None:
    assert base_refusal([], ALICE, Action.ENROLL) is None
    other = PolicySpec(name="u", scope=Scope.USER, action={"revoke": True}, realm=("corp",))
    assert base_refusal([other], ALICE, Action.ENROLL) is not None
    grant = PolicySpec(name="g", scope=Scope.USER, action={"enrollCERTIFICATE": True})
    assert base_refusal([other, grant], ALICE, Action.ENROLL) is None


def test_admins_see_the_realms_their_policies_cover() -> None:
    assert visible_realms([], ADMIN, REALMS) == REALMS
    corp = _admin("c", action={"revoke": True}, realm=("corp", "third"), adminrealm=("helpdesk",))
    assert visible_realms([corp], HELPDESK, REALMS) == ["corp", "third"]
    # Another admin realm's policy covers nothing for the internal admin.
    assert visible_realms([corp], ADMIN, REALMS) == []
    everywhere = _admin("e", action={"revoke": True}, realm=("*", "-other"))
    assert visible_realms([corp, everywhere], ADMIN, REALMS) == ["corp", "third"]
    assert visible_realms([_admin("a", action={"revoke": True})], ADMIN, REALMS) == REALMS
