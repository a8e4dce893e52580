"""``/smtpserver/``: SMTP servers for event handlers; passwords are write-only, stored sealed."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import delete, select

from services.api.auth import Admin, Context
from services.api.envelope import ok
from services.api.errors import Conflict, NotFound, ParameterError
from services.api.notification_schemas import SendTestEmailBody, SmtpServerBody
from services.api.params import body_doc, parse
from services.api.schemas import NAME
from shared.db.models import SmtpServer
from shared.echo import echo
from shared.notification.planning import compose
from shared.notification.smtp import MailError, send_once, smtp_config, tls_context
from shared.security import SecretBox

router = APIRouter(prefix="/smtpserver", tags=["smtpserver"])

_NAME = re.compile(NAME)
_RESERVED = frozenset({"send_test_email"})
# What privacyIDEA shows for a secret, set or not.
CENSORED = "__CENSORED__"


def server_view(row: SmtpServer) -> dict[str, Any]:
    """A server with privacyIDEA's keys (secrets censored) and whether a password is set."""
    return {
        "identifier": row.identifier,
        "server": row.server,
        "port": row.port,
        "tls": row.starttls,
        "implicit_tls": row.implicit_tls,
        "username": row.username,
        "password": CENSORED,
        "password_set": bool(row.password),
        "sender": row.sender,
        "timeout": row.timeout,
        "description": row.description,
        # Mails always go through the notifier's queue; S/MIME signing is not offered.
        "enqueue_job": False,
        "smime": False,
        "dont_send_on_error": False,
        "private_key": "",
        "private_key_password": CENSORED,
        "certificate": "",
    }


@router.get("/")
async def list_servers(ctx: Context, _admin: Admin) -> JSONResponse:
    """All SMTP servers, by identifier."""
    async with ctx.db.read() as session:
        rows = await session.scalars(select(SmtpServer).order_by(SmtpServer.identifier))
        return ok({row.identifier: server_view(row) for row in rows})


@router.post("/send_test_email", openapi_extra=body_doc(SendTestEmailBody))
async def send_test_email(request: Request, ctx: Context, admin: Admin) -> JSONResponse:
    """Send a test mail through a stored server now; ``value`` says whether it was accepted."""
    body = await parse(request, SendTestEmailBody)
    async with ctx.db.read() as session:
        row = await session.get(SmtpServer, body.identifier)
    if row is None:
        raise NotFound(f"identifier: no SMTP server {echo(body.identifier)}")
    try:
        config = smtp_config(row, SecretBox(ctx.settings.resolved_secret_key))
    except ValueError:
        raise Conflict(
            f"identifier: the password of {row.identifier!r} cannot be decrypted; set it again"
        ) from None
    recipient = str(body.recipient)
    message = compose(
        sender=config.sender,
        to=recipient,
        subject=f"certtoken test mail from SMTP server {config.identifier}",
        body=f"This test mail was sent by {admin.username} through {config.identifier} "
        f"({config.server}:{config.port}).\n",
        mimetype="plain",
        reply_to="",
        date=datetime.now(UTC),
        msgid=None,
    )
    try:
        await send_once(config, tls_context(ctx.settings.smtp_ca_file), recipient, message.encode())
    except MailError as exc:
        return ok(False, {"message": str(exc), "permanent": exc.permanent})
    return ok(True, {"message": f"accepted by {config.server}:{config.port}"})


@router.post("/{identifier}", openapi_extra=body_doc(SmtpServerBody))
async def save_server(
    identifier: str, request: Request, ctx: Context, _admin: Admin
) -> JSONResponse:
    """Create or update an SMTP server; without ``password`` the stored one is kept."""
    if not _NAME.match(identifier) or identifier in _RESERVED:
        raise ParameterError(f"identifier: {echo(identifier)} is not a valid name")
    body = await parse(request, SmtpServerBody)
    sealed = None
    if body.password is not None:
        box = SecretBox(ctx.settings.resolved_secret_key)
        sealed = box.seal(body.password.encode()) if body.password else ""
    values = {
        "server": body.server,
        "port": body.port,
        "starttls": body.use_starttls,
        "implicit_tls": body.implicit_tls,
        "username": body.username,
        "sender": str(body.sender),
        "timeout": body.timeout,
        "description": body.description,
    }
    async with ctx.db.write() as session:
        row = await session.get(SmtpServer, identifier)
        if row is None:
            session.add(SmtpServer(identifier=identifier, password=sealed or "", **values))
        else:
            for key, value in values.items():
                setattr(row, key, value)
            if sealed is not None:
                row.password = sealed
    return ok(True)


@router.get("/{identifier}")
async def get_server(identifier: str, ctx: Context, _admin: Admin) -> JSONResponse:
    """One SMTP server."""
    async with ctx.db.read() as session:
        row = await session.get(SmtpServer, identifier)
    if row is None:
        raise NotFound(f"identifier: no SMTP server {echo(identifier)}")
    return ok(server_view(row))


@router.delete("/{identifier}")
async def delete_server(identifier: str, ctx: Context, _admin: Admin) -> JSONResponse:
    """Delete a server; handlers naming it record failed deliveries until changed."""
    async with ctx.db.write() as session:
        result = await session.execute(
            delete(SmtpServer).where(SmtpServer.identifier == identifier)
        )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFound(f"identifier: no SMTP server {echo(identifier)}")
    return ok(True)
