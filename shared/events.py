"""CloudEvents 1.0 (structured JSON) envelopes for jobs and events."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.messaging.base import Message

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/cloudevents+json"


@dataclass(frozen=True)
class CloudEvent:
    """A decoded CloudEvent: what handlers work with."""

    id: str
    type: str
    source: str
    subject: str
    time: str
    data: dict[str, Any]
    correlation_id: str = ""


def new_event(
    type: str, source: str, subject: str, data: dict[str, Any], correlation_id: str = ""
) -> CloudEvent:
    """Build an event with a fresh id and the current time."""
    return CloudEvent(
        id=str(uuid.uuid4()),
        type=type,
        source=source,
        subject=subject,
        time=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        data=data,
        correlation_id=correlation_id,
    )


def encode(event: CloudEvent) -> str:
    """Serialise *event* in the structured JSON mode."""
    doc: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": event.id,
        "type": event.type,
        "source": event.source,
        "subject": event.subject,
        "time": event.time,
        "datacontenttype": "application/json",
        "data": event.data,
    }
    if event.correlation_id:
        doc["correlationid"] = event.correlation_id
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


def to_message(event: CloudEvent, routing_key: str = "") -> Message:
    """The broker message carrying *event*; its message id is the event id."""
    return Message(
        body=encode(event).encode(),
        message_id=event.id,
        type=event.type,
        correlation_id=event.correlation_id,
        routing_key=routing_key,
    )


class MalformedEvent(ValueError):
    """The body is not a CloudEvent certtoken can read."""


def decode(body: bytes) -> CloudEvent:
    """Parse a structured CloudEvent, checking the attributes certtoken relies on."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEvent(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("specversion") != SPEC_VERSION:
        raise MalformedEvent("not a CloudEvents 1.0 document")
    for key in ("id", "type", "source"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise MalformedEvent(f"missing attribute {key!r}")
    data = doc.get("data", {})
    if not isinstance(data, dict):
        raise MalformedEvent("data must be an object")
    return CloudEvent(
        id=doc["id"],
        type=doc["type"],
        source=doc["source"],
        subject=str(doc.get("subject", "")),
        time=str(doc.get("time", "")),
        data=data,
        correlation_id=str(doc.get("correlationid", "")),
    )
