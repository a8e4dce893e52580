"""What policies decide: enrollment rules, CA and template, token limits, role actions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.api.errors import Forbidden, ParameterError
from services.api.policies import Action, EnrollRules, choose_ca_template
from services.api.policies.catalog import Scope
from services.api.policies.decisions import limit_problem, refusal, rules_from
from services.api.policies.spec import PolicySpec
from shared.attestation import AttestationMode
from shared.security import Identity

ADMIN = Identity("admin", "admin")
HELPDESK = Identity("carol", "admin", "helpdesk")
ALICE = Identity("alice", "user", "corp")
DEFAULTS = (AttestationMode.VERIFY, Path("/srv/default-cas"))


def _policy(name: str, scope: Scope, action: dict[str, Any], **fields: Any) -> PolicySpec:
    for key in ("realm", "user", "adminrealm"):
        if key in fields:
            fields[key] = tuple(fields[key])
    return PolicySpec(name=name, scope=scope, action=action, **fields)


def test_without_policies_the_server_defaults_hold() -> None:
    rules = rules_from([], ALICE, ("alice", "corp"), DEFAULTS)
    assert rules == EnrollRules(
        require_attestation=AttestationMode.VERIFY, attestation_ca_path=Path("/srv/default-cas")
    )


def test_enroll_policies_set_every_rule() -> None:
    policies = [
        _policy(
            "corp",
            Scope.ENROLL,
            {
                "certificate_ca_connector": "corpca",
                "certificate_template": "short",
                "certificate_request_subject_component": "email realm",
                "certificate_require_attestation": "require_and_verify",
                "max_token_per_user": 3,
                "max_active_token_per_user": 2,
                "certificate_pkcs12_delete_after_download": True,
            },
            realm=["corp"],
        ),
        _policy("elsewhere", Scope.ENROLL, {"certificate_template": "long"}, realm=["other"]),
    ]
    rules = rules_from(policies, ADMIN, ("alice", "corp"), DEFAULTS)
    assert rules == EnrollRules(
        ca="corpca",
        template="short",
        subject_components=("email", "realm"),
        require_attestation=AttestationMode.REQUIRE_AND_VERIFY,
        attestation_ca_path=Path("/srv/default-cas"),
        max_token_per_user=3,
        max_active_token_per_user=2,
        pkcs12_remove_after_download=True,
    )
    other = rules_from(policies, ADMIN, ("bob", "other"), DEFAULTS)
    assert (other.template, other.subject_components, other.pkcs12_remove_after_download) == (
        "long",
        (),
        False,
    )


def test_subject_component_email_only() -> None:
    policies = [
        _policy("mail", Scope.ENROLL, {"certificate_request_subject_component": "email"}),
    ]
    assert rules_from(policies, ALICE, ("alice", "corp"), DEFAULTS).subject_components == ("email",)


def test_trusted_ca_path_comes_from_the_callers_scope() -> None:
    path = "certificate_trusted_Attestation_CA_path"
    policies = [
        _policy("users", Scope.USER, {path: "/srv/user-cas"}, realm=["corp"]),
        _policy("admins", Scope.ADMIN, {path: "/srv/admin-cas"}),
        _policy("helpdesk", Scope.ADMIN, {path: "/srv/helpdesk-cas"}, adminrealm=["helpdesk"]),
    ]
    owner = ("alice", "corp")
    assert rules_from(policies, ALICE, owner, DEFAULTS).attestation_ca_path == Path("/srv/user-cas")
    assert rules_from(policies, ADMIN, owner, DEFAULTS).attestation_ca_path == Path(
        "/srv/admin-cas"
    )
    # Both admin policies match carol at the same priority with different paths.
    with pytest.raises(Forbidden, match="conflicting values"):
        rules_from(policies, HELPDESK, owner, DEFAULTS)
    ranked = [*policies[:2], _policy("helpdesk", Scope.ADMIN, {path: "/h"}, priority=1)]
    ranked[1] = _policy("admins", Scope.ADMIN, {path: "/srv/admin-cas"}, priority=2)
    assert rules_from(ranked, HELPDESK, owner, DEFAULTS).attestation_ca_path == Path("/h")


def test_choose_ca_template_fills_in_and_refuses_disagreement() -> None:
    fixed = EnrollRules(ca="corpca", template="short")
    assert choose_ca_template(fixed, None, None) == ("corpca", "short")
    assert choose_ca_template(fixed, "corpca", "short") == ("corpca", "short")
    assert choose_ca_template(EnrollRules(), "x", None) == ("x", None)
    with pytest.raises(ParameterError) as caught:
        choose_ca_template(fixed, "otherca", None)
    assert caught.value.message == (
        "ca: policy certificate_ca_connector fixes the CA connector to 'corpca'; "
        "the request asked for 'otherca'"
    )
    with pytest.raises(ParameterError) as caught:
        choose_ca_template(fixed, None, "long")
    assert caught.value.message == (
        "template: policy certificate_template fixes the template to 'short'; "
        "the request asked for 'long'"
    )


def test_limits() -> None:
    rules = EnrollRules(max_token_per_user=2, max_active_token_per_user=1)
    owner = ("alice", "corp")
    assert limit_problem(rules, owner, 1, 0) is None
    assert limit_problem(rules, owner, 2, 0) == (
        "max_token_per_user: user alice@corp has 2 tokens, the policy allows 2"
    )
    assert limit_problem(rules, owner, 1, 1) == (
        "max_active_token_per_user: user alice@corp has 1 active tokens, the policy allows 1"
    )
    assert limit_problem(EnrollRules(), owner, 100, 100) is None


def test_admins_may_do_all_until_an_admin_policy_exists() -> None:
    owner = ("alice", "corp")
    for action in Action:
        assert refusal([], ADMIN, action, owner) is None
    policies = [_policy("enrollers", Scope.ADMIN, {"enrollCERTIFICATE": True}, realm=["corp"])]
    assert refusal(policies, ADMIN, Action.ENROLL, owner) is None
    assert refusal(policies, ADMIN, Action.ENROLL, ("bob", "other")) == (
        "enrollCERTIFICATE: no admin policy allows admin admin to enroll certificate tokens "
        "of user bob@other"
    )
    assert refusal(policies, ADMIN, Action.REVOKE, owner) == (
        "revoke: no admin policy allows admin admin to revoke tokens of user alice@corp"
    )
    # An inactive admin policy restricts nobody.
    inactive = [_policy("off", Scope.ADMIN, {"revoke": True}, active=False)]
    assert refusal(inactive, ADMIN, Action.DELETE, owner) is None


def test_adminrealm_policies() -> None:
    policies = [
        _policy("helpdesk", Scope.ADMIN, {"revoke": True, "delete": True}, adminrealm=["helpdesk"])
    ]
    owner = ("alice", "corp")
    assert refusal(policies, HELPDESK, Action.REVOKE, owner) is None
    assert refusal(policies, HELPDESK, Action.ENROLL, owner) == (
        "enrollCERTIFICATE: no admin policy allows admin carol@helpdesk to enroll "
        "certificate tokens of user alice@corp"
    )
    assert refusal(policies, ADMIN, Action.REVOKE, owner) is not None


def test_users_enroll_and_download_until_a_user_policy_exists_for_their_realm() -> None:
    owner = ("alice", "corp")
    assert refusal([], ALICE, Action.ENROLL, owner) is None
    assert refusal([], ALICE, Action.DOWNLOAD_PKCS12, owner) is None
    elsewhere = [_policy("other", Scope.USER, {"revoke": True}, realm=["other"])]
    assert refusal(elsewhere, ALICE, Action.DOWNLOAD_PKCS12, owner) is None
    # A policy of her realm for another user still restricts her (privacyIDEA's rule).
    for_bob = [_policy("bob", Scope.USER, {"certificate_download_pkcs12": True}, user=["bob"])]
    assert refusal(for_bob, ALICE, Action.DOWNLOAD_PKCS12, owner) == (
        "certificate_download_pkcs12: no user policy allows user alice@corp to download "
        "PKCS#12 files"
    )
    granted = [_policy("dl", Scope.USER, {"certificate_download_pkcs12": True}, realm=["corp"])]
    assert refusal(granted, ALICE, Action.DOWNLOAD_PKCS12, owner) is None
    assert refusal(granted, ALICE, Action.ENROLL, owner) is not None


def test_users_revoke_and_delete_only_when_granted() -> None:
    owner = ("alice", "corp")
    assert refusal([], ALICE, Action.REVOKE, owner) == (
        "revoke: no user policy allows user alice@corp to revoke tokens"
    )
    assert refusal([], ALICE, Action.DELETE, owner) == (
        "delete: no user policy allows user alice@corp to delete tokens"
    )
    granted = [_policy("own", Scope.USER, {"revoke": True}, realm=["corp"])]
    assert refusal(granted, ALICE, Action.REVOKE, owner) is None
    assert refusal(granted, ALICE, Action.DELETE, owner) is not None
    # A better-priority policy saying revoke=false takes it away again.
    denied = [*granted, _policy("no", Scope.USER, {"revoke": False}, priority=0)]
    assert refusal(denied, ALICE, Action.REVOKE, owner) is not None
