"""The words of event handlers: events, the UserNotification module, its options and tags."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from shared.domain import TOKEN_TYPE, EventType, RolloutState
from shared.messaging.topology import MAIL_RETRY

HANDLER_MODULE = "UserNotification"
ACTION_SENDMAIL = "sendmail"
POSITION_POST = "post"
EVENT_NAMES: tuple[str, ...] = tuple(e.value for e in EventType)
TOKEN_TYPES: tuple[str, ...] = (TOKEN_TYPE,)
ROLLOUT_STATES: tuple[str, ...] = tuple(s.value for s in RolloutState)

JOB_MAIL_RETRY = MAIL_RETRY
"""CloudEvent type of an administrator's retry of a failed delivery."""


class To(StrEnum):
    """Recipient types of ``sendmail`` (privacyIDEA's spelling)."""

    TOKENOWNER = "tokenowner"
    EMAIL = "email"
    INTERNAL_ADMIN = "internal admin"
    LOGGED_IN_USER = "logged_in_user"


class Option(StrEnum):
    """Options of the ``sendmail`` action."""

    EMAILCONFIG = "emailconfig"
    TO = "To"
    TO_EMAIL = "To email"
    TO_INTERNAL_ADMIN = "To internal admin"
    SUBJECT = "subject"
    BODY = "body"
    MIMETYPE = "mimetype"
    REPLY_TO = "reply_to"


MIMETYPES = ("plain", "html")

DEFAULT_SUBJECT = "{action}: certificate token {serial} is {rollout_state}"
DEFAULT_BODY = (
    "Hello {givenname} {surname},\n\n"
    "the certificate token {serial} of {username} in realm {userrealm} is now "
    "{rollout_state} ({action}, {date} {time} UTC).\n"
)

# Attributes of a user that ``user_info`` conditions may compare.
USER_ATTRIBUTES = ("username", "realm", "email", "givenname", "surname", "userid")

TAGS: dict[str, str] = {
    "user": "the given name of the token owner",
    "username": "the login name of the token owner",
    "givenname": "the given name of the token owner",
    "surname": "the surname of the token owner",
    "userrealm": "the realm of the token owner",
    "realm": "the realm of the event's token",
    "serial": "the serial number of the token",
    "tokentype": "the type of the token",
    "rollout_state": "the rollout state of the token after the event",
    "admin": "the administrator who acted, if one did",
    "action": "the event, e.g. token_init",
    "time": "the time of the event, HH:MM:SS (UTC)",
    "date": "the date of the event, YYYY-MM-DD (UTC)",
    "recipient_givenname": "the given name of the recipient",
    "recipient_surname": "the surname of the recipient",
    "ca": "the CA connector of the token",
    "template": "the certificate template",
    "request_id": "the CA's request id of a pending request",
    "certificate_serial": "the serial number of the issued certificate (hex)",
    "certificate_subject": "the subject of the issued certificate",
    "certificate_not_after": "the end of the certificate's validity",
    "reason": "why the CA refused or revoked",
    "days_left": "expiry notices: whole days until the certificate expires",
    "not_after": "expiry notices: when the certificate expires (ISO 8601, UTC)",
    "threshold_days": "expiry notices: the threshold (days before expiry) of this notice",
}

CONDITIONS: dict[str, dict[str, Any]] = {
    "rollout_state": {
        "type": "str",
        "desc": "The rollout state of the token after the event.",
        "value": list(ROLLOUT_STATES),
    },
    "tokentype": {
        "type": "multi",
        "desc": "The type of the token (comma-separated list).",
        "value": [{"name": t} for t in TOKEN_TYPES],
    },
    "realm": {"type": "str", "desc": "The realm of the token owner."},
    "tokenrealm": {
        "type": "multi",
        "desc": "The realm of the token (comma-separated list); holds when the token has none.",
    },
    "serial": {
        "type": "regexp",
        "desc": "The serial matches this regular expression (from its start).",
    },
    "token_has_owner": {
        "type": "str",
        "desc": "The token has a user assigned.",
        "value": ["True", "False"],
    },
    "tokeninfo": {
        "type": "str",
        "desc": "A token info field compared with a value: key==value, key>n or key<n "
        "(numbers, ISO dates or text).",
    },
    "result_value": {
        "type": "str",
        "desc": "The result value the event reports.",
        "value": ["True", "False"],
    },
    "result_status": {
        "type": "str",
        "desc": "The result status the event reports.",
        "value": ["True", "False"],
    },
    "detail_error_message": {
        "type": "regexp",
        "desc": "The error message the event reports matches this regular expression.",
    },
    "threshold_days": {
        "type": "str",
        "desc": "Expiry notices (certificate_expiring, ca_expiring): act on the notice sent this "
        "many days before the certificate expires (1 to 3650); each threshold named by a "
        "handler is notified once per certificate.",
    },
    "user_info": {
        "type": "str",
        "desc": "An attribute of the token owner compared with a value: key==value, key>n or "
        f"key<n; keys: {', '.join(USER_ATTRIBUTES)}.",
    },
}


def action_description() -> dict[str, dict[str, dict[str, Any]]]:
    """The actions of UserNotification and their options, as ``GET /event/actions`` shows."""
    return {
        ACTION_SENDMAIL: {
            Option.EMAILCONFIG: {
                "type": "str",
                "required": False,
                "description": "The SMTP server to send through; without one the mail is "
                "written to the outbox folder.",
            },
            Option.TO: {
                "type": "str",
                "required": True,
                "description": "Who receives the mail.",
                "value": [t.value for t in To],
            },
            Option.TO_EMAIL: {
                "type": "str",
                "required": False,
                "description": "Comma-separated addresses, for To=email.",
                "visibleIf": Option.TO,
                "visibleValue": To.EMAIL,
            },
            Option.TO_INTERNAL_ADMIN: {
                "type": "str",
                "required": False,
                "description": "The administrator's name, for To=internal admin.",
                "visibleIf": Option.TO,
                "visibleValue": To.INTERNAL_ADMIN,
            },
            Option.SUBJECT: {
                "type": "str",
                "required": False,
                "description": f"The subject; tags allowed. Default: {DEFAULT_SUBJECT}",
            },
            Option.BODY: {
                "type": "text",
                "required": False,
                "description": "The body; tags allowed: "
                + ", ".join("{" + tag + "}" for tag in TAGS),
            },
            Option.MIMETYPE: {
                "type": "str",
                "required": False,
                "description": "plain (default) or html; tag values are escaped in html.",
                "value": list(MIMETYPES),
            },
            Option.REPLY_TO: {
                "type": "str",
                "required": False,
                "description": "An address for the Reply-To header.",
            },
        }
    }


class DeliveryStatus(StrEnum):
    """Where a mail delivery stands; ``failed`` is parked until an administrator retries."""

    SENDING = "sending"
    SENT = "sent"
    RETRYING = "retrying"
    FAILED = "failed"
