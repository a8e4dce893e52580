"""Pure decisions of the notifier: claiming a delivery, and what an SMTP failure means."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta

import aiosmtplib
import pytest

from services.notifier.claims import Decision, Existing, after_failure, decide
from shared.notification.smtp import (
    PermanentMailError,
    SmtpConfig,
    TemporaryMailError,
    classify,
)
from shared.notification.vocabulary import DeliveryStatus

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LATER = NOW + timedelta(seconds=5)
EARLIER = NOW - timedelta(seconds=5)


@pytest.mark.parametrize(
    ("status", "claimed_until", "admin_retry", "decision"),
    [
        ("sent", None, False, Decision.DONE),
        ("sent", None, True, Decision.DONE),
        ("failed", None, False, Decision.DONE),  # parked: only an administrator retries it
        ("failed", None, True, Decision.TAKE),
        ("retrying", None, False, Decision.TAKE),
        ("sending", LATER, False, Decision.BUSY),  # a live claim
        ("sending", LATER, True, Decision.BUSY),
        ("sending", EARLIER, False, Decision.TAKE),  # its consumer died: take it over
    ],
)
def test_decide(
    status: str, claimed_until: datetime | None, admin_retry: bool, decision: Decision
) -> None:
    assert decide(Existing(1, status, claimed_until), NOW, admin_retry=admin_retry) is decision


def test_a_new_delivery_is_inserted() -> None:
    assert decide(None, NOW) is Decision.INSERT


def test_after_failure() -> None:
    temporary, permanent = TemporaryMailError("451"), PermanentMailError("550")
    assert after_failure(temporary, last_attempt=False) is DeliveryStatus.RETRYING
    assert after_failure(temporary, last_attempt=True) is DeliveryStatus.FAILED
    assert after_failure(permanent, last_attempt=False) is DeliveryStatus.FAILED


def _refused(*codes: int) -> aiosmtplib.SMTPRecipientsRefused:
    return aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(code, "no", f"r{code}@example.org") for code in codes]
    )


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (_refused(550), True),
        (_refused(550, 451), False),
        (aiosmtplib.SMTPSenderRefused(553, "sender", "x@example.org"), True),
        (aiosmtplib.SMTPDataError(452, "full"), False),
        (aiosmtplib.SMTPAuthenticationError(535, "bad credentials"), True),
        (aiosmtplib.SMTPConnectError("refused"), False),
        (aiosmtplib.SMTPServerDisconnected("gone"), False),
        (aiosmtplib.SMTPReadTimeoutError("slow"), False),
        (aiosmtplib.SMTPNotSupported("STARTTLS"), True),
        (ConnectionRefusedError(111, "refused"), False),
    ],
)
def test_classify(error: Exception, permanent: bool) -> None:
    assert classify(error).permanent is permanent


def _connect_through_refused_tls() -> None:
    try:
        raise ssl.SSLCertVerificationError("certificate verify failed")
    except ssl.SSLError as exc:
        raise aiosmtplib.SMTPConnectError("Error connecting") from exc


def test_a_refused_certificate_is_permanent_even_when_wrapped() -> None:
    with pytest.raises(aiosmtplib.SMTPConnectError) as wrapped:
        _connect_through_refused_tls()
    assert classify(wrapped.value).permanent


def test_config_never_shows_its_password() -> None:
    config = SmtpConfig("mail", "smtp.example.org", 25, "a@example.org", password="hunter22")
    assert "hunter22" not in repr(config)
    other = SmtpConfig("mail", "smtp.example.org", 25, "a@example.org", password="other")
    assert config.fingerprint != other.fingerprint
