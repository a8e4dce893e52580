"""Conditions of event handlers: each one matching and not matching; bad values refused."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.notification.conditions import (
    ConditionError,
    Facts,
    compare,
    first_failure,
    normalize_conditions,
    truth,
)

FACTS = Facts(
    serial="CRT0000AB12",
    tokentype="certificate",
    rollout_state="pending",
    realm="corp",
    tokenrealms=("corp",),
    has_owner=True,
    tokeninfo={"request_id": "42", "certificate_not_after": "2030-01-01T00:00:00+00:00"},
    result_value="True",
    result_status="False",
    detail_error_message="CA refused: key too short",
    user_info={"username": "alice", "email": "alice@example.org", "userid": 7},
)


@pytest.mark.parametrize(
    ("name", "matching", "failing"),
    [
        ("rollout_state", "pending", "enrolled"),
        ("tokentype", "certificate", None),
        ("realm", "corp", "other"),
        ("tokenrealm", "other,corp", "other"),
        ("serial", "CRT0000", "^CRT1"),
        ("serial", "CRT0{4}AB12$", "AB12"),
        ("token_has_owner", "True", "False"),
        ("tokeninfo", "request_id==42", "request_id==43"),
        ("tokeninfo", "request_id>41", "request_id>42"),
        ("tokeninfo", "request_id<43", "request_id<9"),
        (
            "tokeninfo",
            "certificate_not_after>2029-12-31T00:00:00Z",
            "certificate_not_after<2029-01-01",
        ),
        ("result_value", "True", "False"),
        ("result_status", "False", "True"),
        ("detail_error_message", "key too", "^key"),
        ("user_info", "username==alice", "username==bob"),
        ("user_info", "userid>6", "userid<7"),
        ("user_info", "email==alice@example.org", "email==bob@example.org"),
    ],
)
def test_condition_matches_and_fails(name: str, matching: str, failing: str | None) -> None:
    assert first_failure(normalize_conditions({name: matching}), FACTS) is None
    if failing is not None:
        reason = first_failure(normalize_conditions({name: failing}), FACTS)
        assert reason is not None
        assert reason.startswith(f"{name}: ")


def test_tokentype_fails_for_another_type() -> None:
    facts = replace(FACTS, tokentype="hotp")
    assert first_failure({"tokentype": "certificate"}, facts) == (
        "tokentype: 'hotp' is not in ['certificate']"
    )


def test_token_without_owner() -> None:
    facts = replace(FACTS, has_owner=False)
    assert first_failure({"token_has_owner": "False"}, facts) is None
    assert (
        first_failure({"token_has_owner": "True"}, facts)
        == "token_has_owner: the token has no owner"
    )


def test_checks_that_cannot_be_made_hold_as_in_privacyidea() -> None:
    facts = replace(FACTS, serial="", tokenrealms=())
    assert first_failure({"serial": "^X", "tokenrealm": "other"}, facts) is None


def test_missing_info_key_fails() -> None:
    assert (
        first_failure({"tokeninfo": "nope==1"}, FACTS)
        == "tokeninfo: nope=None does not satisfy ==1"
    )
    assert first_failure({"user_info": "surname<z"}, FACTS) is not None


def test_absent_result_fields_are_empty() -> None:
    facts = Facts()
    assert first_failure({"result_value": "True"}, facts) == "result_value: '' is not 'True'"
    assert first_failure({"detail_error_message": ".*"}, facts) is None


def test_all_conditions_must_hold_and_the_first_failure_is_named() -> None:
    conditions = normalize_conditions(
        {"rollout_state": "pending", "realm": "other", "serial": "^X"}
    )
    assert first_failure(conditions, FACTS) == "realm: 'corp' is not 'other'"


def test_values_are_normalized_and_empty_ones_dropped() -> None:
    assert normalize_conditions(
        {
            "token_has_owner": True,
            "result_value": "false",
            "realm": "",
            "tokentype": " certificate ",
        }
    ) == {"token_has_owner": "True", "result_value": "False", "tokentype": "certificate"}
    assert normalize_conditions({"tokeninfo": " request_id == 42 "}) == {
        "tokeninfo": "request_id==42"
    }


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        ({"color": "red"}, "color: unknown condition"),
        ({"rollout_state": "waiting"}, "rollout_state: 'waiting' is not one of"),
        ({"tokentype": "hotp"}, "tokentype: 'hotp' is not one of certificate"),
        ({"realm": "bad realm"}, "realm: 'bad realm' is not a realm name"),
        ({"tokenrealm": "corp,,x"}, "tokenrealm: '' is not a realm name"),
        ({"serial": "CRT("}, "serial: not a regular expression"),
        ({"detail_error_message": "[a-"}, "detail_error_message: not a regular expression"),
        ({"token_has_owner": "maybe"}, "token_has_owner: 'maybe' is neither True nor False"),
        ({"result_value": "2"}, "result_value: '2' is neither True nor False"),
        ({"result_status": "yes please"}, "result_status: 'yes please' is neither"),
        ({"tokeninfo": "request_id"}, "tokeninfo: 'request_id' is not of the form"),
        ({"tokeninfo": "a>=1 b"}, None),
        ({"user_info": "phone==1"}, "user_info: unknown attribute 'phone'"),
        ({"user_info": "==x"}, "user_info: '==x' is not of the form"),
        ({"serial": ["CRT"]}, "serial: must be a string"),
        ({"serial": "x" * 2000}, "serial: longer than 1024 characters"),
    ],
)
def test_malformed_conditions_are_refused(
    conditions: dict[str, object], message: str | None
) -> None:
    if message is None:
        normalize_conditions(conditions)  # "a" ">" "=1 b": odd but well-formed
        return
    with pytest.raises(ConditionError) as caught:
        normalize_conditions(conditions)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("actual", "op", "expected", "result"),
    [
        (10, ">", "9", True),  # numbers compare as numbers, not as text
        ("10", "<", "9", False),
        ("b", ">", "a", True),
        ("2024-01-02T00:00:00Z", ">", "2024-01-01", True),
        (True, "==", "True", True),
        (None, "==", "", False),
    ],
)
def test_compare(actual: object, op: str, expected: str, result: bool) -> None:
    assert compare(actual, op, expected) is result


def test_truth() -> None:
    assert [truth(v) for v in (True, False, "true", "0", None, "", "x")] == [
        "True",
        "False",
        "True",
        "False",
        "",
        "",
        "x",
    ]
