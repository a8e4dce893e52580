"""The token's transition function, as a table of every state and every trigger."""

from __future__ import annotations

from typing import Any

import pytest

from shared.domain import EventType, RolloutState
from shared.token_events import CA_DETAIL
from shared.token_states import (
    DISABLED,
    Facts,
    ImpossibleTransition,
    State,
    Trigger,
    allows,
    is_active,
    transition,
)

S, T, E = RolloutState, Trigger, EventType
NO = None  # the trigger is refused
GONE = "deleted"  # the token no longer exists
COLUMNS = (
    T.SUBMIT,
    T.UPLOAD,
    T.ISSUE,
    T.HOLD,
    T.FAIL,
    T.APPROVE,
    T.DENY,
    T.ISSUE_HELD,
    T.REFUSE_HELD,
    T.REVOKE,
    T.DELETE,
    T.DISABLE,
    T.ENABLE,
)
DELETED = (GONE, E.TOKEN_DELETE)
# One row per state (None: no token yet), one cell per trigger in COLUMNS' order:
# (new state, event announcing it) or NO.
TABLE: dict[State, tuple[Any, ...]] = {
    None: ((S.SUBMITTED, None), (S.ENROLLED, E.TOKEN_INIT), *[NO] * 11),
    S.SUBMITTED: (
        NO,
        NO,
        (S.ENROLLED, E.TOKEN_INIT),
        (S.PENDING, E.TOKEN_INIT),
        (S.FAILED, E.TOKEN_INIT),
        NO,
        NO,
        NO,
        NO,
        NO,
        DELETED,
        (S.SUBMITTED, E.TOKEN_DISABLE),
        (S.SUBMITTED, E.TOKEN_ENABLE),
    ),
    S.PENDING: (
        NO,
        NO,
        NO,
        NO,
        NO,
        (S.PENDING, None),
        (S.DENIED, E.TOKEN_UPDATE),
        (S.ENROLLED, E.TOKEN_UPDATE),
        (S.DENIED, E.TOKEN_UPDATE),
        NO,
        DELETED,
        (S.PENDING, E.TOKEN_DISABLE),
        (S.PENDING, E.TOKEN_ENABLE),
    ),
    S.ENROLLED: (
        *[NO] * 9,
        (S.REVOKED, E.TOKEN_REVOKE),
        DELETED,
        (S.ENROLLED, E.TOKEN_DISABLE),
        (S.ENROLLED, E.TOKEN_ENABLE),
    ),
    S.DENIED: (*[NO] * 10, DELETED, (S.DENIED, E.TOKEN_DISABLE), (S.DENIED, E.TOKEN_ENABLE)),
    S.FAILED: (*[NO] * 10, DELETED, (S.FAILED, E.TOKEN_DISABLE), (S.FAILED, E.TOKEN_ENABLE)),
    # A revoked token is inactive for good.
    S.REVOKED: (*[NO] * 10, DELETED, NO, NO),
}
ROWS = [
    pytest.param(state, trigger, cell, id=f"{state or 'absent'}-{trigger.value}")
    for state, cells in TABLE.items()
    for trigger, cell in zip(COLUMNS, cells, strict=True)
]


def test_the_table_covers_every_state_and_every_trigger() -> None:
    assert set(COLUMNS) == set(Trigger) and len(COLUMNS) == len(Trigger)
    assert set(TABLE) == {None, *RolloutState}
    pairs = {(state, trigger) for state, trigger, _ in (row.values for row in ROWS)}
    assert pairs == {(state, trigger) for state in TABLE for trigger in Trigger}
    assert len(ROWS) == len(TABLE) * len(Trigger)


@pytest.mark.parametrize(("state", "trigger", "expected"), ROWS)
def test_transition(state: State, trigger: Trigger, expected: tuple[Any, Any] | None) -> None:
    assert allows(state, trigger) is (expected is not None)
    if expected is None:
        with pytest.raises(ImpossibleTransition) as refused:
            transition(state, trigger, {"kept": 1})
        assert (refused.value.state, refused.value.trigger) == (state, trigger)
        assert refused.value.state_name in str(refused.value)
        assert repr(trigger.value) in str(refused.value)
        return
    moved = transition(state, trigger, {"kept": 1})
    new_state, event = expected
    assert moved.state == (None if new_state == GONE else new_state)
    assert moved.emit == event
    assert moved.info["kept"] == 1


ISSUED = Facts(
    certificate_serial="0A",
    certificate_subject="CN=alice",
    certificate_not_after="2030-01-01T00:00:00+00:00",
)


@pytest.mark.parametrize(("state", "trigger"), [(S.SUBMITTED, T.ISSUE), (S.PENDING, T.ISSUE_HELD)])
def test_issuing_records_the_certificate_and_drops_a_stale_reason(
    state: State, trigger: Trigger
) -> None:
    before = {"request_id": "r1", "reason": "CA down", CA_DETAIL: "503", "subject": "CN=alice"}
    moved = transition(state, trigger, before, ISSUED)
    assert moved.info == {
        "request_id": "r1",
        "subject": "CN=alice",
        "certificate_serial": "0A",
        "certificate_subject": "CN=alice",
        "certificate_not_after": "2030-01-01T00:00:00+00:00",
    }
    assert before["reason"] == "CA down"  # the caller's info is not changed


def test_holding_records_the_request() -> None:
    moved = transition(S.SUBMITTED, T.HOLD, {}, Facts(request_id="r1"))
    assert moved.info == {"request_id": "r1"}


@pytest.mark.parametrize(
    ("state", "trigger"),
    [(S.SUBMITTED, T.FAIL), (S.PENDING, T.DENY), (S.PENDING, T.REFUSE_HELD)],
)
def test_refusals_record_the_reason_and_the_cas_words(state: State, trigger: Trigger) -> None:
    moved = transition(state, trigger, {"request_id": "r1"}, Facts(reason="no", detail="E42"))
    assert moved.info == {"request_id": "r1", "reason": "no", CA_DETAIL: "E42"}
    plain = transition(state, trigger, {}, Facts(reason="no"))
    assert plain.info == {"reason": "no"}


def test_revoking_records_when_and_why() -> None:
    facts = Facts(reason="keyCompromise", at="2026-01-01T00:00:00+00:00")
    moved = transition(S.ENROLLED, T.REVOKE, {"certificate_serial": "0A"}, facts)
    assert moved.info == {
        "certificate_serial": "0A",
        "revoked_at": "2026-01-01T00:00:00+00:00",
        "revocation_reason": "keyCompromise",
    }


def test_disabling_marks_the_token_inactive_and_enabling_clears_it() -> None:
    facts = Facts(reason="ignored")
    disabled = transition(S.ENROLLED, T.DISABLE, {"certificate_serial": "0A"}, facts)
    assert disabled.info == {"certificate_serial": "0A", DISABLED: True}
    assert not is_active(S.ENROLLED, disabled.info)
    enabled = transition(S.ENROLLED, T.ENABLE, disabled.info)
    assert enabled.info == {"certificate_serial": "0A"}
    assert is_active(S.ENROLLED, enabled.info)
    assert not is_active(S.REVOKED, enabled.info) and not is_active(None, {})


@pytest.mark.parametrize("trigger", [T.SUBMIT, T.UPLOAD, T.APPROVE, T.DELETE])
def test_other_triggers_keep_the_info(trigger: Trigger) -> None:
    state = next(s for s in TABLE if allows(s, trigger))
    info = {"subject": "CN=alice", "reason": "kept"}
    assert transition(state, trigger, info, Facts(reason="ignored")).info == info
