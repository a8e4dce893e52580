"""Pure code: serials, CloudEvents envelopes."""

from __future__ import annotations

import json

import pytest

from shared.domain import new_serial
from shared.events import MalformedEvent, decode, encode, new_event, to_message
from shared.messaging.topology import CA_WORKER_QUEUE, event_routing_key


def test_serials_are_crt_and_eight_hex_digits() -> None:
    serials = {new_serial() for _ in range(1000)}
    assert len(serials) == 1000
    for serial in serials:
        assert serial.startswith("CRT") and len(serial) == 11
        int(serial[3:], 16)


def test_cloudevent_round_trip() -> None:
    event = new_event("token_init", "certtoken/test", "CRT00000001", {"a": 1}, "cid-1")
    doc = json.loads(encode(event))
    assert doc["specversion"] == "1.0" and doc["correlationid"] == "cid-1"
    assert doc["time"].endswith("Z")
    message = to_message(event, "token.init")
    assert message.message_id == event.id and message.type == "token_init"
    assert decode(message.body) == event


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"specversion":"0.3","id":"x","type":"t","source":"s"}',
        b'{"specversion":"1.0","id":"","type":"t","source":"s"}',
        b'{"specversion":"1.0","id":"x","type":"t","source":"s","data":[1]}',
    ],
)
def test_malformed_events_are_refused(body: bytes) -> None:
    with pytest.raises(MalformedEvent):
        decode(body)


def test_names() -> None:
    assert event_routing_key("token_init") == "token.init"
    assert event_routing_key("token_update") == "token.update"
    assert CA_WORKER_QUEUE.parking == "certtoken.ca_worker.parking"
    assert CA_WORKER_QUEUE.retry_queue(1000) == "certtoken.ca_worker.retry.1000"
