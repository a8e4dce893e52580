"""The contract's reading of an answer: key paths with JSON types, and what breaks a contract."""

from __future__ import annotations

from tests.contract.shape import extra, key_paths, missing_or_mistyped, value_at

ANSWER = {
    "result": {
        "status": True,
        "value": {
            "tokens": [{"serial": "CRT1", "info": {}}, {"serial": "CRT2", "id": 2}],
            "localca": {"templates": {"user": {"days": 1}}},
            "count": 2.5,
        },
    },
    "detail": None,
}


def test_key_paths_merge_list_items_and_name_json_types() -> None:
    paths = key_paths(ANSWER)
    assert paths["result.value.tokens[]"] == ["object"]
    assert paths["result.value.tokens[].serial"] == ["string"]
    assert paths["result.value.tokens[].id"] == ["integer"]
    assert paths["result.status"] == ["boolean"]
    assert paths["result.value.count"] == ["number"]
    assert paths["detail"] == ["null"]


def test_named_objects_share_one_key_and_ignored_paths_keep_only_their_type() -> None:
    paths = key_paths(
        ANSWER, named=["result.value.localca.templates"], ignore=["result.value.tokens[].info"]
    )
    assert paths["result.value.localca.templates.*.days"] == ["integer"]
    assert "result.value.localca.templates.user" not in paths
    assert paths["result.value.tokens[].info"] == ["object"]


def test_missing_and_mistyped_paths_break_the_contract_extras_do_not() -> None:
    expected = {"a": ["integer"], "b": ["number"], "c": ["string", "null"], "d": ["string"]}
    actual = {"a": ["boolean"], "b": ["integer"], "c": ["null"], "e": ["string"]}
    assert missing_or_mistyped(expected, actual) == [
        "type of a: boolean, expected integer",
        "missing d (string)",
    ]
    assert extra(expected, actual) == ["extra e (string)"]


def test_value_at_follows_object_keys_only() -> None:
    assert value_at(ANSWER, "result.status") is True
    assert value_at(ANSWER, "result.error.code") is None
    assert value_at(ANSWER, "detail.serial") is None
