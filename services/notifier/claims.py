"""Who may send a delivery now, and what a failure makes of it: pure decisions, no I/O.

A delivery row is claimed (status ``sending``, a claim token, a lease) and committed before
any SMTP traffic, so that two consumers never send the same mail at once. A claim whose
lease ran out belongs to a consumer that died: the next one takes it over.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from shared.notification.smtp import MailError
from shared.notification.vocabulary import DeliveryStatus


@dataclass(frozen=True)
class Existing:
    """The stored state of a delivery."""

    id: int
    status: str
    claimed_until: datetime | None


class Decision(Enum):
    """What a consumer may do with a delivery."""

    INSERT = "insert"  # no row yet: create it, claimed
    TAKE = "take"  # claim the existing row
    DONE = "done"  # sent, or parked: nothing to do
    BUSY = "busy"  # another consumer holds a live claim: wait for its lease


def decide(existing: Existing | None, now: datetime, *, admin_retry: bool = False) -> Decision:
    """Whether this consumer may claim the delivery; parked ones only on an admin's retry."""
    if existing is None:
        return Decision.INSERT
    status = existing.status
    if status == DeliveryStatus.SENT:
        return Decision.DONE
    if status == DeliveryStatus.FAILED:
        return Decision.TAKE if admin_retry else Decision.DONE
    if status == DeliveryStatus.SENDING and (
        existing.claimed_until is not None and existing.claimed_until > now
    ):
        return Decision.BUSY
    return Decision.TAKE


def after_failure(error: MailError, *, last_attempt: bool) -> DeliveryStatus:
    """``retrying`` while attempts remain for a temporary failure, else ``failed``."""
    if error.permanent or last_attempt:
        return DeliveryStatus.FAILED
    return DeliveryStatus.RETRYING
