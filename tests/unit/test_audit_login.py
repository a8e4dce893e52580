"""Pure parts of the audit log and of user login."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from services.api.audit import action_name, build_record, error_message, note_scope
from services.api.login import Tries, after_failure, reserve, split_login
from shared.security import Identity

NOW = datetime(2026, 1, 1, tzinfo=UTC)
WINDOW = timedelta(seconds=60)


@pytest.mark.parametrize(
    ("username", "realm", "expected"),
    [
        ("alice@corp", None, ("alice", "corp")),
        ("alice", "corp", ("alice", "corp")),
        ("alice@corp", "corp", ("alice", "corp")),
        ("a@b@corp", None, ("a@b", "corp")),
        ("alice@other", "corp", ("alice@other", "corp")),
        ("alice", None, None),
        ("alice@", None, None),
        ("@corp", None, None),
        ("@corp", "corp", None),
    ],
)
def test_split_login(username: str, realm: str | None, expected: tuple[str, str] | None) -> None:
    assert split_login(username, realm) == expected


def test_tries_are_reserved_until_used_up_then_locked() -> None:
    tries = Tries(0, None)
    for n in range(1, 4):
        tries, allowed = reserve(tries, 3, WINDOW, NOW)
        assert allowed and tries == Tries(n, None)
    assert after_failure(Tries(2, None), 3, WINDOW, NOW) == Tries(2, None)
    locked = after_failure(tries, 3, WINDOW, NOW)
    assert locked == Tries(0, NOW + WINDOW)
    assert reserve(locked, 3, WINDOW, NOW + WINDOW / 2) == (locked, False)
    assert reserve(locked, 3, WINDOW, NOW + WINDOW * 2) == (Tries(1, None), True)


def test_parallel_attempts_beyond_the_budget_lock_without_a_check() -> None:
    assert reserve(Tries(3, None), 3, WINDOW, NOW) == (Tries(0, NOW + WINDOW), False)


def test_error_message_of_an_envelope_only() -> None:
    body = json.dumps({"result": {"status": False, "error": {"code": 905, "message": "x: bad"}}})
    assert error_message(body.encode()) == "x: bad"
    assert error_message(b"not json") == ""
    assert error_message(b'{"result": {"value": 1}}') == ""
    assert error_message(b'{"detail": "Not Found"}') == ""


def test_action_names_the_route_template() -> None:
    assert action_name("POST", "/token/init") == "POST /token/init"
    assert action_name("GET", None) == "GET (unmatched)"
    # privacyIDEA writes a route's parameters as <name>.
    assert action_name("DELETE", "/token/{serial}") == "DELETE /token/<serial>"


def _scope(**extra: object) -> dict[str, object]:
    scope: dict[str, object] = {
        "method": "GET",
        "route": SimpleNamespace(path="/token/{serial}"),
        "path_params": {"serial": "CRT1"},
        "query_string": b"user=alice&realm=corp",
        "client": ("10.0.0.1", 5000),
        "headers": [(b"accept", b"*/*"), (b"user-agent", b"curl/8.5.0")],
        "state": {"identity": Identity("admin", "admin")},
    }
    scope.update(extra)
    return scope


def test_record_takes_params_and_notes() -> None:
    scope = _scope()
    record = build_record(scope, 200, NOW, b"", "cid-1")
    assert (record.action, record.serial, record.username, record.realm) == (
        "GET /token/<serial>",
        "CRT1",
        "alice",
        "corp",
    )
    assert (record.role, record.caller, record.client) == ("admin", "admin", "10.0.0.1")
    assert record.success and record.info == "" and record.correlation_id == "cid-1"
    assert record.user_agent == "curl/8.5.0" and record.duration >= 0 and record.server
    note_scope(scope, serial="CRT2", info="x" * 400)
    noted = build_record(scope, 409, NOW, b'{"result": {"error": {"message": "m"}}}', "c")
    assert noted.serial == "CRT2" and not noted.success
    assert len(noted.info) == 255 and noted.info.endswith("…")
    with pytest.raises(ValueError, match="password"):
        note_scope(scope, password="secret")


def test_record_of_a_failed_anonymous_call_keeps_the_error() -> None:
    scope = _scope(state={}, query_string=b"", path_params={})
    body = b'{"result": {"status": false, "error": {"code": 4031, "message": "no token"}}}'
    record = build_record(scope, 401, NOW, body, "")
    assert (record.role, record.caller, record.success, record.info) == ("", "", False, "no token")
