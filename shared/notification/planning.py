"""Which handlers match an event, and the mails they send: pure code, no I/O.

The notifier sends what :func:`plan` returns; ``POST /event/test`` shows it without sending.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from typing import Any

from shared.notification.conditions import Facts, first_failure, truth
from shared.notification.handlers import HandlerSpec, address
from shared.notification.templates import one_line, render
from shared.notification.vocabulary import DEFAULT_BODY, DEFAULT_SUBJECT, Option, To

# Token-info keys an event may carry; they describe the token as of the event.
EVENT_INFO_KEYS = (
    "certificate_serial",
    "certificate_subject",
    "certificate_not_after",
    "request_id",
    "reason",
)

# What an expiry notice (certificate_expiring, ca_expiring) adds to its event's data.
NOTICE_KEYS = ("days_left", "not_after", "threshold_days")


@dataclass(frozen=True)
class Person:
    """A user or an administrator, as far as mail needs them."""

    name: str
    email: str = ""
    realm: str = ""
    givenname: str = ""
    surname: str = ""
    userid: int | None = None


@dataclass(frozen=True)
class EventContext:
    """An event with what it refers to: token info, owner, administrators, SMTP senders."""

    event_id: str
    event_type: str
    time: datetime
    data: Mapping[str, Any]
    tokeninfo: Mapping[str, Any] = field(default_factory=dict)
    owner: Person | None = None
    admins: Mapping[str, Person] = field(default_factory=dict)
    senders: Mapping[str, str] = field(default_factory=dict)
    default_sender: str = "certtoken@localhost"

    @property
    def serial(self) -> str:
        """The token's serial."""
        return _text(self.data.get("serial"))

    @property
    def admin(self) -> str:
        """The administrator who acted: named by the event, or who enrolled the token."""
        named = _text(self.data.get("admin"))
        if named:
            return named
        enrolled_by = _text(self.tokeninfo.get("enrolled_by"))
        role, _, name = enrolled_by.partition(":")
        return name if role == "admin" and self.event_type == "token_init" else ""


@dataclass(frozen=True)
class Mail:
    """One mail a handler sends to one recipient, or why it cannot be sent."""

    handler_id: int
    handler_name: str
    recipient: str
    address: str
    smtpserver: str
    subject: str
    body: str
    mimetype: str
    message: str
    problem: str = ""


@dataclass(frozen=True)
class Verdict:
    """Whether a handler matched the event, and why not."""

    handler_id: int
    handler_name: str
    matched: bool
    reason: str = ""


@dataclass(frozen=True)
class Plan:
    """The verdict on every handler and the mails of the matching ones, in ordering."""

    verdicts: list[Verdict]
    mails: list[Mail]


@dataclass(frozen=True)
class _Recipient:
    key: str
    address: str
    person: Person | None
    problem: str = ""


def facts(ctx: EventContext) -> Facts:
    """The facts conditions are evaluated against; absent keys count as empty."""
    data = ctx.data
    realm = _text(data.get("realm"))
    owner = ctx.owner
    user_info: dict[str, Any] = {}
    if owner is not None:
        user_info = {
            "username": owner.name,
            "realm": owner.realm,
            "email": owner.email,
            "givenname": owner.givenname,
            "surname": owner.surname,
            "userid": owner.userid,
        }
    return Facts(
        serial=ctx.serial,
        tokentype=_text(data.get("tokentype")),
        rollout_state=_text(data.get("rollout_state")),
        realm=realm,
        tokenrealms=(realm,) if realm else (),
        has_owner=bool(_text(data.get("username"))),
        tokeninfo=tokeninfo(ctx),
        result_value=truth(data.get("result_value")),
        result_status=truth(data.get("result_status")),
        detail_error_message=_text(data.get("detail_error_message")),
        user_info=user_info,
        threshold_days=_text(data.get("threshold_days")),
    )


def tokeninfo(ctx: EventContext) -> dict[str, Any]:
    """The stored token info, with the values the event itself reports on top."""
    info = dict(ctx.tokeninfo)
    info.update({key: ctx.data[key] for key in EVENT_INFO_KEYS if key in ctx.data})
    return info


def plan(handlers: Sequence[HandlerSpec], ctx: EventContext) -> Plan:
    """Evaluate every handler in ordering; render the mails of those that match."""
    verdicts: list[Verdict] = []
    mails: list[Mail] = []
    known = facts(ctx)
    for handler in sorted(handlers, key=lambda h: (h.ordering, h.id)):
        reason = _mismatch(handler, ctx, known)
        verdicts.append(Verdict(handler.id, handler.name, reason is None, reason or ""))
        if reason is None:
            mails.extend(_mail(handler, r, ctx) for r in _recipients(handler, ctx))
    return Plan(verdicts, mails)


def message_id(event_id: str, handler_id: int, recipient: str) -> str:
    """The same Message-ID for the same delivery, so that a duplicate is recognisable."""
    digest = hashlib.sha256(f"{event_id}\0{handler_id}\0{recipient}".encode()).hexdigest()
    return f"<{digest[:40]}@certtoken>"


def tag_values(ctx: EventContext, recipient: Person | None) -> dict[str, str]:
    """The value of every tag for this event and recipient."""
    data = ctx.data
    owner = ctx.owner or Person(name=_text(data.get("username")), realm=_text(data.get("realm")))
    info = tokeninfo(ctx)
    values = {
        "user": owner.givenname,
        "username": owner.name,
        "givenname": owner.givenname,
        "surname": owner.surname,
        "userrealm": owner.realm,
        "realm": _text(data.get("realm")),
        "serial": ctx.serial,
        "tokentype": _text(data.get("tokentype")),
        "rollout_state": _text(data.get("rollout_state")),
        "admin": ctx.admin,
        "action": ctx.event_type,
        "time": ctx.time.astimezone(UTC).strftime("%H:%M:%S"),
        "date": ctx.time.astimezone(UTC).strftime("%Y-%m-%d"),
        "recipient_givenname": recipient.givenname if recipient else "",
        "recipient_surname": recipient.surname if recipient else "",
        "ca": _text(data.get("ca")),
        "template": _text(data.get("template")),
    }
    for key in EVENT_INFO_KEYS:
        values[key] = _text(info.get(key))
    for key in NOTICE_KEYS:
        values[key] = _text(data.get(key))
    return values


def _mismatch(handler: HandlerSpec, ctx: EventContext, known: Facts) -> str | None:
    if ctx.event_type not in handler.events:
        return f"not bound to {ctx.event_type}"
    if not handler.active:
        return "inactive"
    return first_failure(handler.conditions, known)


def _recipients(handler: HandlerSpec, ctx: EventContext) -> list[_Recipient]:
    to = handler.options.get(Option.TO, "")
    found: list[_Recipient] = []
    if to == To.TOKENOWNER:
        found.append(_owner(ctx))
    elif to == To.EMAIL:
        for text in handler.options.get(Option.TO_EMAIL, "").split(","):
            if text.strip():
                found.append(_address(f"address {text.strip()!r}", text, None))
    elif to == To.INTERNAL_ADMIN:
        found.append(_admin(ctx, handler.options.get(Option.TO_INTERNAL_ADMIN, "")))
    elif to == To.LOGGED_IN_USER:
        found.append(_admin(ctx, ctx.admin) if ctx.admin else _owner(ctx))
    else:
        found.append(_Recipient(f"to:{to}", "", None, f"unknown recipient type {to!r}"))
    unique: dict[str, _Recipient] = {}
    for recipient in found:
        unique.setdefault(recipient.key, recipient)
    return list(unique.values())


def _owner(ctx: EventContext) -> _Recipient:
    username, realm = _text(ctx.data.get("username")), _text(ctx.data.get("realm"))
    who = f"token owner {username}@{realm}"
    if not username:
        return _Recipient(f"tokenowner:{ctx.serial}", "", None, "the token has no owner")
    if ctx.owner is None:
        return _Recipient(f"tokenowner:{username}@{realm}", "", None, f"{who} is not a known user")
    if not ctx.owner.email:
        return _Recipient(
            f"tokenowner:{username}@{realm}", "", ctx.owner, f"{who} has no e-mail address"
        )
    return _address(who, ctx.owner.email, ctx.owner)


def _admin(ctx: EventContext, name: str) -> _Recipient:
    admin = ctx.admins.get(name)
    who = f"administrator {name!r}"
    if admin is None:
        return _Recipient(f"admin:{name}", "", None, f"{who} is not a known administrator")
    if not admin.email:
        return _Recipient(f"admin:{name}", "", admin, f"{who} has no e-mail address")
    return _address(who, admin.email, admin)


def _address(who: str, text: str, person: Person | None) -> _Recipient:
    try:
        normalized = address(text)
    except ValueError:
        key = f"invalid:{one_line(text)[:200]}"
        return _Recipient(key, "", person, f"{who}: {one_line(text)!r} is not an e-mail address")
    return _Recipient(normalized.lower(), normalized, person)


def _mail(handler: HandlerSpec, recipient: _Recipient, ctx: EventContext) -> Mail:
    options = handler.options
    values = tag_values(ctx, recipient.person)
    mimetype = options.get(Option.MIMETYPE, "plain")
    subject = one_line(render(options.get(Option.SUBJECT, DEFAULT_SUBJECT), values))
    body = render(options.get(Option.BODY, DEFAULT_BODY), values, html_body=mimetype == "html")
    server = options.get(Option.EMAILCONFIG, "")
    problem = recipient.problem
    if not problem and server and server not in ctx.senders:
        problem = f"unknown SMTP server {server!r}"
    message = ""
    if not problem:
        message = compose(
            sender=ctx.senders.get(server, ctx.default_sender),
            to=recipient.address,
            subject=subject,
            body=body,
            mimetype=mimetype,
            reply_to=options.get(Option.REPLY_TO, ""),
            date=ctx.time,
            msgid=message_id(ctx.event_id, handler.id, recipient.key),
        )
    return Mail(
        handler_id=handler.id,
        handler_name=handler.name,
        recipient=recipient.key,
        address=recipient.address,
        smtpserver=server,
        subject=subject,
        body=body,
        mimetype=mimetype,
        message=message,
        problem=problem,
    )


def compose(
    *,
    sender: str,
    to: str,
    subject: str,
    body: str,
    mimetype: str,
    reply_to: str,
    date: datetime,
    msgid: str | None,
) -> str:
    """The mail in RFC 5322 form, 7-bit clean; every header value is a single line."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date.astimezone(UTC))
    msg["Message-ID"] = msgid or make_msgid(domain="certtoken")
    msg["Auto-Submitted"] = "auto-generated"
    if reply_to:
        msg["Reply-To"] = reply_to
    msg.set_content(body, subtype=mimetype, charset="utf-8", cte="quoted-printable")
    return msg.as_string()


def _text(value: object) -> str:
    return "" if value is None else str(value)
