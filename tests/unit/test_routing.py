"""Topic matching as RabbitMQ does it, and the retry/parking route of a failed delivery."""

from __future__ import annotations

import errno

import pytest

from shared.messaging.base import Message, Reject, RetryLater
from shared.messaging.routing import (
    ATTEMPT,
    ERROR,
    ORIGINAL_EXCHANGE,
    ORIGINAL_ROUTING_KEY,
    failure_route,
    incoming_message,
    outgoing_headers,
    replay_headers,
    topic_matches,
)
from shared.messaging.topology import JOBS_EXCHANGE, QueueSpec


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("token.init", "token.init", True),
        ("token.init", "token.revoke", False),
        ("token.#", "token.init", True),
        ("token.#", "token.init.pending", True),
        ("token.#", "token", True),
        ("token.#", "tokens.init", False),
        ("#", "", True),
        ("#", "token.init", True),
        ("#.init", "init", True),
        ("#.init", "token.init", True),
        ("#.init", "token.initial", False),
        ("*.init", "token.init", True),
        ("*.init", "init", False),
        ("*.init", "a.token.init", False),
        ("token.*", "token", False),
        ("token.*", "token.init", True),
        ("token.*", "token.init.x", False),
        ("*", "", False),
        ("*", "token", True),
        ("a.#.b", "a.b", True),
        ("a.#.b", "a.x.y.b", True),
        ("a.#.b", "a.x.y.c", False),
        ("#.#", "a.b.c", True),
        ("a.*.#", "a", False),
        ("a.*.#", "a.b", True),
        ("a.b", "a..b", False),
        ("a.*.b", "a..b", True),
    ],
)
def test_topic_matches(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected


SPEC = QueueSpec("certtoken.test", JOBS_EXCHANGE, ("csr.sign",))


def _message(attempt: int = 1, **headers: object) -> Message:
    return Message(
        body=b"{}",
        message_id="m1",
        type="csr_sign",
        headers=dict(headers),
        routing_key="csr.sign",
        attempt=attempt,
    )


def test_retry_goes_to_the_delay_queue_of_its_attempt() -> None:
    delays = (50, 100)
    first = failure_route(
        SPEC,
        _message(1),
        RetryLater("busy"),
        exchange=JOBS_EXCHANGE,
        retry_delays_ms=delays,
        max_attempts=4,
    )
    assert (first.queue, first.delay_ms, first.parked) == ("certtoken.test.retry.50", 50, False)
    assert first.headers[ATTEMPT] == 2
    assert first.headers[ORIGINAL_ROUTING_KEY] == "csr.sign"
    assert first.headers[ORIGINAL_EXCHANGE] == JOBS_EXCHANGE
    third = failure_route(
        SPEC, _message(3), ValueError("x"), exchange="", retry_delays_ms=delays, max_attempts=4
    )
    assert third.queue == "certtoken.test.retry.100"  # the last delay repeats
    assert third.headers[ORIGINAL_EXCHANGE] == ""


def test_last_attempt_and_reject_park_with_the_error() -> None:
    last = failure_route(
        SPEC,
        _message(3, **{ORIGINAL_EXCHANGE: JOBS_EXCHANGE}),
        RetryLater("busy"),
        exchange="",
        retry_delays_ms=(50,),
        max_attempts=3,
    )
    assert last.parked
    assert last.queue == "certtoken.test.parking"
    assert last.headers[ERROR] == "RetryLater: busy"
    assert last.headers[ATTEMPT] == 3
    assert last.headers[ORIGINAL_EXCHANGE] == JOBS_EXCHANGE
    rejected = failure_route(
        SPEC,
        _message(1),
        Reject("bad csr"),
        exchange=JOBS_EXCHANGE,
        retry_delays_ms=(50,),
        max_attempts=3,
    )
    assert rejected.parked
    assert rejected.headers[ATTEMPT] == 1
    assert rejected.headers[ERROR] == "Reject: bad csr"


def test_error_text_is_bounded() -> None:
    route = failure_route(
        SPEC, _message(1), Reject("x" * 5000), exchange="", retry_delays_ms=(1,), max_attempts=1
    )
    assert len(route.headers[ERROR]) == 1000


def test_headers_round_trip() -> None:
    sent = outgoing_headers(_message(1, tenant="acme"))
    assert sent == {"tenant": "acme"}
    assert outgoing_headers(_message(2))[ATTEMPT] == 2
    received = incoming_message(
        b"{}",
        message_id="m1",
        type="t",
        correlation_id="c",
        headers={ATTEMPT: 3, ORIGINAL_ROUTING_KEY: "csr.sign", "x-death": [{}]},
        routing_key="certtoken.test",
        redelivered=True,
    )
    assert (received.attempt, received.routing_key) == (3, "csr.sign")
    assert "x-death" not in received.headers
    assert received.redelivered
    assert replay_headers(received) == {ORIGINAL_ROUTING_KEY: "csr.sign"}


@pytest.mark.parametrize(("value", "attempt"), [(None, 1), ("2", 2), (b"4", 4), ("x", 1), (0, 1)])
def test_attempt_header_is_read_defensively(value: object, attempt: int) -> None:
    headers = {} if value is None else {ATTEMPT: value}
    message = incoming_message(
        b"",
        message_id="",
        type="",
        correlation_id="",
        headers=headers,
        routing_key="k",
        redelivered=False,
    )
    assert message.attempt == attempt


def test_a_full_disk_is_retried_past_the_last_attempt_never_parked() -> None:
    full = OSError(errno.ENOSPC, "No space left on device")
    route = failure_route(
        SPEC, _message(3), full, exchange="", retry_delays_ms=(50, 100), max_attempts=3
    )
    assert not route.parked
    assert (route.queue, route.delay_ms) == ("certtoken.test.retry.100", 100)
    assert route.headers[ATTEMPT] == 4
    assert "No space left on device" in route.headers[ERROR]
