"""``/event/``: event handlers (UserNotification), their dry run, and the mail deliveries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select

from services.api.auth import Admin, Context
from services.api.context import ApiContext
from services.api.envelope import ok
from services.api.errors import Conflict, NotFound, ParameterError
from services.api.jobs import job_row
from services.api.notification_schemas import DryRunBody, EventHandlerBody
from services.api.params import (
    Page,
    PageSize,
    PathId,
    QueryId,
    body_doc,
    load_json,
    parse,
    read_params,
    validate,
)
from services.api.tokens import page_links
from shared.db.models import Admin as AdminRow
from shared.db.models import EventHandler, MailDelivery, SmtpServer
from shared.echo import echo
from shared.events import CloudEvent
from shared.messaging.outbox import insert_outbox
from shared.messaging.topology import MAIL_RETRY
from shared.notification.context import load_context, load_handlers
from shared.notification.handlers import (
    HandlerError,
    check_conditions,
    check_events,
    check_module,
    check_options,
)
from shared.notification.planning import plan
from shared.notification.vocabulary import (
    CONDITIONS,
    EVENT_NAMES,
    HANDLER_MODULE,
    POSITION_POST,
    DeliveryStatus,
    Option,
    To,
    action_description,
)

router = APIRouter(prefix="/event", tags=["event"])

SOURCE = "certtoken/api"
# Mails are sent after the answer, so a failing handler can never abort its request.
DEFAULT_ABORT_ON_ERROR = False
_OPTION_PREFIX = "option."


def handler_view(row: EventHandler) -> dict[str, Any]:
    """A handler as privacyIDEA shows it (``condition``: its unused legacy field, always "")."""
    return {
        "id": row.id,
        "name": row.name,
        "event": list(row.events),
        "handlermodule": row.handlermodule,
        "action": row.action,
        "position": row.position,
        "active": row.active,
        "ordering": row.ordering,
        "conditions": dict(row.conditions),
        "options": dict(row.options),
        "condition": "",
        "abort_on_error": row.abort_on_error,
    }


def delivery_view(row: MailDelivery) -> dict[str, Any]:
    """A delivery record; the mail itself stays in the database."""
    return {
        "id": row.id,
        "event_id": row.event_id,
        "event": row.event_type,
        "serial": row.serial,
        "handler_id": row.handler_id,
        "handler_name": row.handler_name,
        "recipient": row.address or row.recipient,
        "smtpserver": row.smtpserver,
        "subject": row.subject,
        "status": row.status,
        "permanent": row.permanent,
        "attempts": row.attempts,
        "error": row.error,
        "created": row.created_at.isoformat(),
        "updated": row.updated_at.isoformat(),
        "sent": row.sent_at.isoformat() if row.sent_at else None,
    }


@router.get("/")
async def list_handlers(ctx: Context, _admin: Admin) -> JSONResponse:
    """All event handlers, in ordering."""
    async with ctx.db.read() as session:
        rows = await session.scalars(
            select(EventHandler).order_by(EventHandler.ordering, EventHandler.id)
        )
        return ok([handler_view(row) for row in rows])


@router.get("/available")
async def available_events(_admin: Admin) -> JSONResponse:
    """The events handlers can be bound to."""
    return ok(list(EVENT_NAMES))


@router.get("/conditions/{handlermodule}")
async def conditions(handlermodule: str, _admin: Admin) -> JSONResponse:
    """The conditions a handler module evaluates."""
    _module(handlermodule)
    return ok(CONDITIONS)


@router.get("/actions/{handlermodule}")
async def actions(handlermodule: str, _admin: Admin) -> JSONResponse:
    """The actions of a handler module and their options."""
    _module(handlermodule)
    return ok(action_description())


@router.get("/defaults/{handlermodule}")
async def defaults(handlermodule: str, _admin: Admin) -> JSONResponse:
    """What a new handler starts with when not told: as privacyIDEA, for any module name."""
    return ok({"abort_on_error": DEFAULT_ABORT_ON_ERROR})


@router.get("/positions/{handlermodule}")
async def positions(handlermodule: str, _admin: Admin) -> JSONResponse:
    """Where a handler module can run: after the event only."""
    _module(handlermodule)
    return ok([POSITION_POST])


@router.get("/deliveries")
async def list_deliveries(
    ctx: Context,
    _admin: Admin,
    status: DeliveryStatus | None = None,
    event_id: str | None = Query(default=None, max_length=64),
    serial: str | None = Query(default=None, max_length=40),
    handler_id: QueryId = None,
    page: Page = 1,
    pagesize: PageSize = 50,
) -> JSONResponse:
    """Mail deliveries, newest first; ``status=failed`` lists the parked ones."""
    query = select(MailDelivery)
    if status is not None:
        query = query.where(MailDelivery.status == status.value)
    if event_id:
        query = query.where(MailDelivery.event_id == event_id)
    if serial:
        query = query.where(MailDelivery.serial == serial)
    if handler_id:
        query = query.where(MailDelivery.handler_id == handler_id)
    async with ctx.db.read() as session:
        count = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = await session.scalars(
            query.order_by(MailDelivery.id.desc()).offset((page - 1) * pagesize).limit(pagesize)
        )
        deliveries = [delivery_view(row) for row in rows]
    return ok({"deliveries": deliveries, **page_links(count, page, pagesize)})


@router.get("/deliveries/{delivery_id}")
async def get_delivery(delivery_id: PathId, ctx: Context, _admin: Admin) -> JSONResponse:
    """One delivery."""
    async with ctx.db.read() as session:
        row = await session.get(MailDelivery, delivery_id)
    if row is None:
        raise NotFound(f"delivery: no delivery {delivery_id}")
    return ok(delivery_view(row))


@router.post("/deliveries/{delivery_id}/retry")
async def retry_delivery(delivery_id: PathId, ctx: Context, _admin: Admin) -> JSONResponse:
    """Ask the notifier to send a failed delivery's mail again (answered before it does)."""
    async with ctx.db.read() as session:
        row = await session.get(MailDelivery, delivery_id)
    if row is None:
        raise NotFound(f"delivery: no delivery {delivery_id}")
    if row.status != DeliveryStatus.FAILED:
        raise Conflict(f"delivery: {delivery_id} is {row.status}; only failed ones are retried")
    if not row.address or not row.message:
        raise Conflict(f"delivery: {delivery_id} has nothing to resend ({row.error})")
    outbox_row = job_row(ctx, MAIL_RETRY, str(delivery_id), {"delivery_id": delivery_id})
    async with ctx.db.write() as session:
        await insert_outbox(session, [outbox_row])
    await ctx.relay.send([outbox_row])
    return ok(True, {"delivery_id": delivery_id, "status": "queued"})


@router.post("/test", openapi_extra=body_doc(DryRunBody))
async def dry_run(request: Request, ctx: Context, _admin: Admin) -> JSONResponse:
    """Which handlers an event would trigger, why the others would not, and their mails."""
    body = await parse(request, DryRunBody)
    name = body.event or body.type
    if name not in EVENT_NAMES:
        raise ParameterError(f"event: {echo(name)} is not one of {', '.join(EVENT_NAMES)}")
    event = CloudEvent(
        id=body.id,
        type=name,
        source=SOURCE,
        subject=str(body.data.get("serial", "")),
        time=body.time or datetime.now(UTC).isoformat(),
        data=body.data,
    )
    async with ctx.db.read() as session:
        handlers = await load_handlers(session)
        context = await load_context(session, event, handlers, ctx.settings.mail_sender)
    result = plan(handlers, context)
    return ok(
        {
            "matched": [
                {"id": v.handler_id, "name": v.handler_name} for v in result.verdicts if v.matched
            ],
            "not_matched": [
                {"id": v.handler_id, "name": v.handler_name, "reason": v.reason}
                for v in result.verdicts
                if not v.matched
            ],
            "mails": [
                {
                    "handler_id": m.handler_id,
                    "to": m.address,
                    "recipient": m.recipient,
                    "smtpserver": m.smtpserver,
                    "subject": m.subject,
                    "body": m.body,
                    "mimetype": m.mimetype,
                    "problem": m.problem,
                    "message": m.message,
                }
                for m in result.mails
            ],
        }
    )


@router.post("/enable/{handler_id}")
async def enable(handler_id: PathId, ctx: Context, _admin: Admin) -> JSONResponse:
    """Make a handler active."""
    return await _set_active(ctx, handler_id, True)


@router.post("/disable/{handler_id}")
async def disable(handler_id: PathId, ctx: Context, _admin: Admin) -> JSONResponse:
    """Make a handler inactive."""
    return await _set_active(ctx, handler_id, False)


@router.post("", openapi_extra=body_doc(EventHandlerBody))
@router.post("/", include_in_schema=False)
async def save_handler(request: Request, ctx: Context, _admin: Admin) -> JSONResponse:
    """Create a handler, or update the one named by ``id``; bad definitions are a 400."""
    params = await read_params(request)
    options = params.pop("options", None)
    if options is not None and not isinstance(options, dict):
        raise ParameterError("options: must be an object")
    options = dict(options or {})
    for key in [k for k in params if k.startswith(_OPTION_PREFIX)]:
        options[key[len(_OPTION_PREFIX) :]] = params.pop(key)
    body = validate(EventHandlerBody, {**params, "options": options})
    values = _checked(body)
    await _check_references(ctx, values["options"])
    async with ctx.db.write() as session:
        if body.id is None:
            row = EventHandler(**values, abort_on_error=DEFAULT_ABORT_ON_ERROR)
            session.add(row)
            await session.flush()
        else:
            found = await session.get(EventHandler, body.id)
            if found is None:
                raise NotFound(f"id: no event handler {body.id}")
            row = found
            for key, value in values.items():
                setattr(row, key, value)
        if body.abort_on_error is not None:
            row.abort_on_error = body.abort_on_error
        handler_id = row.id
    return ok(handler_id)


@router.get("/{handler_id}")
async def get_handler(handler_id: PathId, ctx: Context, _admin: Admin) -> JSONResponse:
    """A list of the one handler, empty when there is none (privacyIDEA's answer)."""
    async with ctx.db.read() as session:
        row = await session.get(EventHandler, handler_id)
    return ok([] if row is None else [handler_view(row)])


@router.delete("/{handler_id}")
async def delete_handler(handler_id: PathId, ctx: Context, _admin: Admin) -> JSONResponse:
    """Delete a handler (its delivery records stay)."""
    async with ctx.db.write() as session:
        row = await session.get(EventHandler, handler_id)
        if row is None:
            raise NotFound(f"id: no event handler {handler_id}")
        await session.delete(row)
    return ok(handler_id)


def _module(handlermodule: str) -> None:
    if handlermodule != HANDLER_MODULE:
        raise NotFound(
            f"handlermodule: unknown module {echo(handlermodule)}; known: {HANDLER_MODULE}"
        )


def _checked(body: EventHandlerBody) -> dict[str, Any]:
    """The handler's columns, every part checked; a 400 names the first bad one."""
    conditions = body.conditions
    if isinstance(conditions, str):
        conditions = load_json(conditions, "conditions") if conditions.strip() else {}
        if not isinstance(conditions, dict):
            raise ParameterError("conditions: must be a JSON object")
    try:
        check_module(body.handlermodule, body.action, body.position)
        values = {
            "name": body.name,
            "events": check_events(body.event),
            "handlermodule": body.handlermodule,
            "action": body.action,
            "position": body.position,
            "active": body.active,
            "ordering": body.ordering,
            "conditions": check_conditions(conditions),
            "options": check_options(body.options),
        }
    except HandlerError as exc:
        raise ParameterError(str(exc)) from None
    return values


async def _check_references(ctx: ApiContext, options: dict[str, str]) -> None:
    """The SMTP server and the administrator the options name exist."""
    server = options.get(Option.EMAILCONFIG)
    admin = (
        options.get(Option.TO_INTERNAL_ADMIN) if options[Option.TO] == To.INTERNAL_ADMIN else None
    )
    async with ctx.db.read() as session:
        if server and await session.get(SmtpServer, server) is None:
            raise ParameterError(f"option.{Option.EMAILCONFIG}: unknown SMTP server {echo(server)}")
        if (
            admin
            and await session.scalar(select(AdminRow.id).where(AdminRow.name == admin)) is None
        ):
            raise ParameterError(
                f"option.{Option.TO_INTERNAL_ADMIN}: unknown administrator {echo(admin)}"
            )


async def _set_active(ctx: ApiContext, handler_id: int, active: bool) -> JSONResponse:
    async with ctx.db.write() as session:
        row = await session.get(EventHandler, handler_id)
        if row is None:
            raise NotFound(f"id: no event handler {handler_id}")
        row.active = active
    return ok(handler_id)
