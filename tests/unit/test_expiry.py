"""Expiry notices as pure code: thresholds, what is due, the condition and the tags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from shared.expiry import (
    DEFAULT_THRESHOLD_DAYS,
    ca_days_left_text,
    days_left,
    due,
    parse_time,
    thresholds,
)
from shared.notification.conditions import ConditionError, normalize_conditions
from shared.notification.handlers import HandlerSpec
from shared.notification.planning import EventContext, Person, plan
from tests.support.pki import self_signed_pem

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
EXPIRING = "certificate_expiring"


def handler(handler_id: int, threshold: str = "", *, active: bool = True) -> HandlerSpec:
    """A handler mailing the owner on certificate_expiring, for *threshold* days if given."""
    return HandlerSpec(
        id=handler_id,
        name=f"h{handler_id}",
        events=(EXPIRING,),
        conditions={"threshold_days": threshold} if threshold else {},
        options={"To": "tokenowner", "subject": "{threshold_days}: {serial} in {days_left} days"},
        active=active,
    )


def test_days_left_counts_whole_days() -> None:
    assert days_left(NOW + timedelta(days=5), NOW) == 5
    assert days_left(NOW + timedelta(days=4, hours=23), NOW) == 4
    assert days_left(NOW + timedelta(hours=1), NOW) == 0
    assert days_left(NOW - timedelta(hours=1), NOW) == -1


def test_thresholds_come_from_active_bound_handlers() -> None:
    handlers = [handler(1, "30"), handler(2, "7"), handler(3, "14", active=False), handler(4)]
    other = HandlerSpec(id=5, name="x", events=("token_init",), conditions={"threshold_days": "3"})
    assert thresholds([*handlers, other], EXPIRING) == (30, 7)
    assert DEFAULT_THRESHOLD_DAYS == 30
    assert thresholds([handler(4)], EXPIRING) == (DEFAULT_THRESHOLD_DAYS,)
    assert thresholds([handler(4)], EXPIRING, always=(90,), default=None) == (90,)
    assert thresholds([], EXPIRING) == ()


def test_due_while_valid_and_within_the_threshold() -> None:
    assert due(NOW + timedelta(days=5), NOW, (30, 7)) == [30, 7]
    assert due(NOW + timedelta(days=7), NOW, (30, 7)) == [30, 7]
    assert due(NOW + timedelta(days=7, seconds=1), NOW, (30, 7)) == [30]
    assert due(NOW + timedelta(days=31), NOW, (30, 7)) == []
    assert due(NOW, NOW, (30, 7)) == []


def test_parse_time() -> None:
    assert parse_time("2026-12-06T12:00:00+00:00") == NOW + timedelta(days=5)
    assert parse_time("2026-12-06T12:00:00Z") == NOW + timedelta(days=5)
    assert parse_time("2026-12-06T12:00:00") == NOW + timedelta(days=5)
    assert parse_time("soon") is None
    assert parse_time(None) is None


@pytest.mark.parametrize("value", ["0", "-1", "3651", "7.5", "seven", True])
def test_threshold_condition_refuses_what_is_no_day_count(value: object) -> None:
    with pytest.raises(ConditionError) as caught:
        normalize_conditions({"threshold_days": value})
    assert str(caught.value).startswith("threshold_days: ")


def test_threshold_condition_selects_its_notice() -> None:
    assert normalize_conditions({"threshold_days": " 007 "}) == {"threshold_days": "7"}
    assert normalize_conditions({"threshold_days": 30}) == {"threshold_days": "30"}
    ctx = EventContext(
        event_id="ev-1",
        event_type=EXPIRING,
        time=NOW,
        data={
            "serial": "CRT0000AB12",
            "username": "alice",
            "realm": "corp",
            "days_left": 5,
            "not_after": "2026-12-06T12:00:00+00:00",
            "threshold_days": 7,
        },
        owner=Person("alice", "alice@example.org", "corp"),
    )
    result = plan([handler(1, "30"), handler(2, "7"), handler(3)], ctx)
    assert [v.matched for v in result.verdicts] == [False, True, True]
    assert result.verdicts[0].reason == "threshold_days: the notice is for 7 days, not 30"
    assert [m.subject for m in result.mails] == ["7: CRT0000AB12 in 5 days"] * 2
    other = EventContext(event_id="ev-2", event_type=EXPIRING, time=NOW, data={"serial": "X"})
    assert plan([handler(1, "30")], other).verdicts[0].reason == (
        "threshold_days: the event is no expiry notice"
    )


def test_ca_days_left_text() -> None:
    pem = self_signed_pem("Test CA")
    not_after = x509.load_pem_x509_certificate(pem.encode()).not_valid_after_utc
    assert ca_days_left_text(pem, not_after - timedelta(days=200, hours=1), 90) == "200 days left"
    assert ca_days_left_text(pem, not_after - timedelta(days=9, hours=1), 90) == (
        "9 days left (expiring: within 90)"
    )
    assert ca_days_left_text(pem, not_after, 90) == "expired"
    assert ca_days_left_text("", NOW, 90) == "no certificate"
    assert ca_days_left_text("junk", NOW, 90) == "certificate unreadable"
