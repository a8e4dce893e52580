"""Expiry notices: which thresholds handlers ask for, which are due, what events say. Pure code."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509

from shared.domain import EventType, RolloutState
from shared.notification.handlers import HandlerSpec
from shared.token_events import TokenIdentity, token_event_data

DAY = timedelta(days=1)
THRESHOLD_CONDITION = "threshold_days"
# The notice of a handler bound to an expiry event without a threshold_days condition.
DEFAULT_THRESHOLD_DAYS = 30
TOKEN = "token"
CA = "ca"
EXPIRY_EVENTS = (EventType.CERTIFICATE_EXPIRING.value, EventType.CA_EXPIRING.value)


def days_left(not_after: datetime, now: datetime) -> int:
    """Whole days until *not_after*: 0 on its last day, negative once it has passed."""
    return math.floor((not_after - now) / DAY)


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 time (UTC when it names no zone); None when *value* is not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def thresholds(
    handlers: Iterable[HandlerSpec],
    event_type: str,
    always: Iterable[int] = (),
    default: int | None = DEFAULT_THRESHOLD_DAYS,
) -> tuple[int, ...]:
    """The thresholds (days) to notify for *event_type*, largest first.

    Each active handler bound to it asks for its ``threshold_days`` condition, or for
    *default* when it names none (such a handler acts on every notice); *always* adds the
    service's own thresholds.
    """
    found = set(always)
    for handler in handlers:
        if not handler.active or event_type not in handler.events:
            continue
        value = str(handler.conditions.get(THRESHOLD_CONDITION, "") or "")
        if value.isdigit():
            found.add(int(value))
        elif default is not None:
            found.add(default)
    return tuple(sorted((t for t in found if t > 0), reverse=True))


def due(not_after: datetime, now: datetime, wanted: Sequence[int]) -> list[int]:
    """The thresholds whose notice is due: the certificate is still valid and ends within them."""
    if not_after <= now:
        return []
    return [t for t in wanted if not_after - now <= t * DAY]


def certificate_notice(
    token: TokenIdentity,
    info: Mapping[str, Any],
    not_after: datetime,
    threshold: int,
    now: datetime,
) -> dict[str, Any]:
    """The data of a ``certificate_expiring`` event: the token's usual data and the notice's."""
    data = token_event_data(token, RolloutState.ENROLLED, dict(info))
    data.update(_notice(not_after, threshold, now))
    return data


def ca_notice(ca: str, cert: x509.Certificate, threshold: int, now: datetime) -> dict[str, Any]:
    """The data of a ``ca_expiring`` event: the connector, its certificate and the notice's."""
    not_after = cert.not_valid_after_utc
    return {
        "ca": ca,
        "certificate_serial": f"{cert.serial_number:x}",
        "certificate_subject": cert.subject.rfc4514_string(),
        "certificate_not_after": not_after.isoformat(),
        **_notice(not_after, threshold, now),
    }


def _notice(not_after: datetime, threshold: int, now: datetime) -> dict[str, Any]:
    return {
        "days_left": days_left(not_after, now),
        "not_after": not_after.astimezone(UTC).isoformat(),
        "threshold_days": threshold,
    }


def ca_days_left_text(pem: str, now: datetime, warning_days: int) -> str:
    """How ``certtoken ca list`` reports a CA certificate's end: days left, and if that is soon."""
    if not pem:
        return "no certificate"
    try:
        not_after = x509.load_pem_x509_certificate(pem.encode()).not_valid_after_utc
    except ValueError:
        return "certificate unreadable"
    if not_after <= now:
        return "expired"
    left = days_left(not_after, now)
    soon = f" (expiring: within {warning_days})" if not_after - now <= warning_days * DAY else ""
    return f"{left} days left{soon}"
