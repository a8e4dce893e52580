"""Reading policies from privacyIDEA's request fields: actions, lists, flags, refusals."""

from __future__ import annotations

from typing import Any

import pytest

from services.api.policies.catalog import Scope
from services.api.policies.spec import (
    UNMATCHED_FIELDS,
    PolicySpec,
    parse_actions,
    parse_policy,
    parse_scope,
    policy_view,
)
from services.api.policies.store import spec_of
from shared.db.models import Policy


def test_action_string_with_values_and_bare_names() -> None:
    actions = parse_actions(
        Scope.ENROLL,
        " certificate_ca_connector=localca, max_token_per_user=3,"
        "certificate_require_attestation=verify , certificate_pkcs12_delete_after_download,"
        "certificate_request_subject_component=realm email,",
    )
    assert actions == {
        "certificate_ca_connector": "localca",
        "max_token_per_user": 3,
        "certificate_require_attestation": "verify",
        "certificate_pkcs12_delete_after_download": True,
        "certificate_request_subject_component": "email realm",
    }


def test_action_object_and_role_flags() -> None:
    actions = parse_actions(
        Scope.USER,
        {
            "enrollCERTIFICATE": True,
            "revoke": "false",
            "delete": "1",
            "certificate_download_pkcs12": 0,
        },
    )
    assert actions == {
        "enrollCERTIFICATE": True,
        "revoke": False,
        "delete": True,
        "certificate_download_pkcs12": False,
    }
    assert parse_actions(
        Scope.ENROLL, {"certificate_request_subject_component": "email,realm"}
    ) == {"certificate_request_subject_component": "email realm"}
    assert parse_actions(Scope.ENROLL, {"certificate_request_subject_component": ["email"]}) == {
        "certificate_request_subject_component": "email"
    }
    assert parse_actions(Scope.ADMIN, "certificate_trusted_Attestation_CA_path=/etc/att") == {
        "certificate_trusted_Attestation_CA_path": "/etc/att"
    }


@pytest.mark.parametrize(
    ("scope", "action", "message"),
    [
        (Scope.ENROLL, "revoke", "action: unknown action 'revoke' in scope 'enrollment'; known: "),
        (Scope.USER, "max_token_per_user=2", "action: unknown action 'max_token_per_user' in"),
        (
            Scope.ENROLL,
            "certificate_ca_connector",
            "action: certificate_ca_connector needs a value",
        ),
        (Scope.ENROLL, "certificate_ca_connector=", "action: certificate_ca_connector needs a"),
        (Scope.ENROLL, "certificate_ca_connector=a b", "action: certificate_ca_connector must be"),
        (Scope.ENROLL, "max_token_per_user=0", "action: max_token_per_user must be a whole"),
        (Scope.ENROLL, "max_active_token_per_user=x", "action: max_active_token_per_user must"),
        (Scope.ENROLL, "certificate_require_attestation=maybe", "action: certificate_require_"),
        (Scope.ENROLL, "certificate_request_subject_component=phone", "action: certificate_req"),
        (Scope.ENROLL, "certificate_pkcs12_delete_after_download=perhaps", "action: certificate_p"),
        (Scope.USER, "certificate_trusted_Attestation_CA_path=rel/dir", "action: certificate_tru"),
        (Scope.USER, "revoke=sometimes", "action: revoke must be true or false"),
        (Scope.USER, "revoke, revoke=false", "action: 'revoke' is given twice"),
        (Scope.USER, "", "action: required"),
        (Scope.USER, " , ", "action: required"),
        (Scope.USER, 5, "action: must be a string"),
    ],
)
def test_bad_actions_name_the_field(scope: Scope, action: Any, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_actions(scope, action)
    assert str(caught.value).startswith(message), str(caught.value)


def test_unknown_action_lists_the_known_ones() -> None:
    with pytest.raises(ValueError) as caught:
        parse_actions(Scope.ENROLL, "x")
    assert "certificate_ca_connector" in str(caught.value)
    assert "max_active_token_per_user" in str(caught.value)


def test_policy_fields_and_defaults() -> None:
    policy = parse_policy(
        "p-1.a_b",
        {
            "scope": "admin",
            "action": "revoke, delete",
            "realm": "corp, other,corp",
            "user": ["*", "-bob", "!eve"],
            "adminrealm": "helpdesk",
            "active": "0",
            "priority": "7",
            "name": "p-1.a_b",
            "client": "",
            "check_all_resolvers": False,
        },
    )
    assert policy == PolicySpec(
        name="p-1.a_b",
        scope=Scope.ADMIN,
        action={"revoke": True, "delete": True},
        realm=("corp", "other"),
        user=("*", "-bob", "!eve"),
        adminrealm=("helpdesk",),
        active=False,
        priority=7,
    )
    plain = parse_policy("p", {"scope": "user", "action": "revoke"})
    assert (plain.active, plain.priority, plain.realm, plain.user) == (True, 1, (), ())
    assert policy_view(plain) == {
        **UNMATCHED_FIELDS,
        "name": "p",
        "scope": "user",
        "action": {"revoke": True},
        "realm": [],
        "user": [],
        "adminrealm": [],
        "active": True,
        "priority": 1,
    }


@pytest.mark.parametrize(
    ("name", "fields", "message"),
    [
        ("-bad", {}, "name: must match"),
        ("x" * 121, {}, "name: must match"),
        ("p", {"name": "q"}, "name: the body names 'q'"),
        ("p", {"scope": ""}, "scope: required"),
        ("p", {"scope": "authentication"}, "scope: unknown scope 'authentication'"),
        ("p", {"adminrealm": "helpdesk", "scope": "user"}, "adminrealm: only admin-scope"),
        ("p", {"active": "maybe"}, "active: must be true or false"),
        ("p", {"priority": 0}, "priority: must be a whole number"),
        ("p", {"priority": "high"}, "priority: must be a whole number"),
        ("p", {"priority": True}, "priority: must be a whole number"),
        ("p", {"realm": "co rp"}, "realm: 'co rp' is not a valid entry"),
        ("p", {"realm": 5}, "realm: must be a comma-separated string or a list"),
        ("p", {"user": ["alice", 3]}, "user: entries must be strings"),
        ("p", {"client": "10.0.0.0/8"}, "client: not supported"),
        ("p", {"time": "Mon-Fri: 9-18"}, "time: not supported"),
    ],
)
def test_bad_policy_fields(name: str, fields: dict[str, Any], message: str) -> None:
    params = {"scope": "user", "action": "revoke", **fields}
    with pytest.raises(ValueError) as caught:
        parse_policy(name, params)
    assert str(caught.value).startswith(message), str(caught.value)


def test_enrollment_scope_is_privacyideas_name_and_enroll_an_alias() -> None:
    assert Scope.ENROLL.value == "enrollment"
    for name in ("enrollment", "enroll", " enroll "):
        assert parse_policy("p", {"scope": name, "action": "max_token_per_user=2"}).scope == (
            Scope.ENROLL
        )
    shown = policy_view(parse_policy("p", {"scope": "enroll", "action": "max_token_per_user=2"}))
    assert shown["scope"] == "enrollment"
    # A row stored by an earlier release under the old name reads as the same scope.
    old = Policy(name="old", scope="enroll", action={"max_token_per_user": 1}, realm=[], user=[])
    old.adminrealm, old.active, old.priority = [], True, 1
    assert spec_of(old).scope == Scope.ENROLL
    with pytest.raises(ValueError, match="scope: unknown scope 'enrol'"):
        parse_scope("enrol")
