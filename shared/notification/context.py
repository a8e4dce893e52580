"""Reads what planning needs for one event: handlers, token info, owner, admins, SMTP senders."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import Admin, EventHandler, SmtpServer, Token, User
from shared.events import CloudEvent
from shared.identity import enrolling_admin
from shared.notification.handlers import HandlerSpec
from shared.notification.planning import EventContext, Person
from shared.notification.vocabulary import Option


def handler_spec(row: EventHandler) -> HandlerSpec:
    """A stored handler as planning uses it."""
    return HandlerSpec(
        id=row.id,
        name=row.name,
        events=tuple(row.events),
        conditions=dict(row.conditions),
        options={str(k): str(v) for k, v in row.options.items()},
        active=row.active,
        ordering=row.ordering,
        position=row.position,
    )


async def load_handlers(session: AsyncSession, event_type: str | None = None) -> list[HandlerSpec]:
    """All handlers, or those bound to *event_type* (active or not), in ordering."""
    rows = await session.scalars(
        select(EventHandler).order_by(EventHandler.ordering, EventHandler.id)
    )
    specs = [handler_spec(row) for row in rows]
    if event_type is None:
        return specs
    return [spec for spec in specs if event_type in spec.events]


async def load_context(
    session: AsyncSession,
    event: CloudEvent,
    handlers: list[HandlerSpec],
    default_sender: str,
    senders: dict[str, str] | None = None,
) -> EventContext:
    """The event with its token's info, its owner, and the admins and servers *handlers* name.

    *senders* (SMTP server -> sender address) saves a query when the caller knows them.
    """
    data = event.data
    serial = str(data.get("serial") or event.subject or "")
    tokeninfo: dict[str, Any] = {}
    if serial:
        info = await session.scalar(select(Token.info).where(Token.serial == serial))
        tokeninfo = dict(info or {})
    owner = None
    username, realm = str(data.get("username") or ""), str(data.get("realm") or "")
    if username:
        user = (
            await session.execute(
                select(User.id, User.email, User.givenname, User.surname).where(
                    User.username == username, User.realm == realm
                )
            )
        ).first()
        if user is not None:
            owner = Person(
                name=username,
                email=user.email,
                realm=realm,
                givenname=user.givenname,
                surname=user.surname,
                userid=user.id,
            )
    admin_names = {str(data.get("admin") or "")}
    admin_names.add(enrolling_admin(str(tokeninfo.get("enrolled_by") or "")))
    servers: set[str] = set()
    for handler in handlers:
        admin_names.add(handler.options.get(Option.TO_INTERNAL_ADMIN, ""))
        servers.add(handler.options.get(Option.EMAILCONFIG, ""))
    admin_names.discard("")
    servers.discard("")
    admins: dict[str, Person] = {}
    if admin_names:
        rows = await session.execute(
            select(Admin.name, Admin.email).where(Admin.name.in_(admin_names))
        )
        admins = {name: Person(name=name, email=email) for name, email in rows}
    if senders is None:
        senders = {}
        if servers:
            rows = await session.execute(
                select(SmtpServer.identifier, SmtpServer.sender).where(
                    SmtpServer.identifier.in_(servers)
                )
            )
            senders = {identifier: sender for identifier, sender in rows}
    return EventContext(
        event_id=event.id,
        event_type=event.type,
        time=event_time(event.time),
        data=data,
        tokeninfo=tokeninfo,
        owner=owner,
        admins=admins,
        senders=senders,
        default_sender=default_sender,
    )


def event_time(text: str) -> datetime:
    """The CloudEvent's time, or now when it has none (a dry run, a hand-made event)."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
