"""The operator's ``token`` and ``request`` commands: tables for people, ``--json`` for scripts.

They read and write the database the settings name, as ``admin`` and ``ca`` do. Approving,
denying and revoking take the api's checks and put the same job in the outbox, which the
running services' relay publishes; the ca_worker then acts and the events and mails follow.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, select

from shared.ca_jobs import REVOCATION_REASONS
from shared.config import Settings
from shared.db.models import (
    AuditEntry,
    CARequest,
    IssuedCertificate,
    OutboxMessage,
    Token,
    TokenKey,
    utcnow,
)
from shared.db.session import Database
from shared.domain import RolloutState

DEFAULT_LIMIT = 100
DEFAULT_WAIT = 15.0
_POLL_SECONDS = 0.2
SOURCE = "certtoken/cli"
_DECIDED = {"approve": "approved", "deny": "denied"}
# What the ca_worker leaves a token in once it acted on each job.
_DONE_STATES = {
    "approve": {RolloutState.ENROLLED, RolloutState.FAILED, RolloutState.DENIED},
    "deny": {RolloutState.DENIED, RolloutState.FAILED},
    "revoke": {RolloutState.REVOKED},
}


def add_parsers(sub: Any) -> None:
    """Add ``token`` and ``request`` to the CLI's subparsers *sub*."""
    token = sub.add_parser("token", help="list, show and revoke certificate tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    listing = token_sub.add_parser("list", help="tokens matching the filters, oldest first")
    listing.add_argument("--user", help="owner's user name")
    listing.add_argument("--realm", help="owner's realm")
    listing.add_argument(
        "--state", choices=[s.value for s in RolloutState], help="certtoken's stored state"
    )
    listing.add_argument("--ca", help="CA connector name")
    listing.add_argument(
        "--limit", type=_positive_int, default=DEFAULT_LIMIT, help="at most this many (%(default)s)"
    )
    _json_arg(listing)
    show = token_sub.add_parser(
        "show", help="one token: state, owner, certificate, request (never a key or PKCS#12)"
    )
    show.add_argument("serial")
    _json_arg(show)
    revoke = token_sub.add_parser(
        "revoke", help="revoke a token's certificate at its CA (the api's checks and job)"
    )
    revoke.add_argument("serial")
    revoke.add_argument("--reason", choices=REVOCATION_REASONS, default="unspecified")
    _wait_arg(revoke)
    _json_arg(revoke)

    request = sub.add_parser("request", help="requests held for a CA manager's decision")
    request_sub = request.add_subparsers(dest="request_command", required=True, metavar="ACTION")
    pending = request_sub.add_parser("list", help="pending requests, oldest first")
    pending.add_argument("--ca", help="CA connector name")
    _json_arg(pending)
    approve = request_sub.add_parser("approve", help="approve a held request: the CA issues")
    approve.add_argument("id", help="request id (request list shows it)")
    _wait_arg(approve)
    _json_arg(approve)
    deny = request_sub.add_parser("deny", help="deny a held request with a reason the owner sees")
    deny.add_argument("id", help="request id (request list shows it)")
    deny.add_argument("--reason", required=True, help="why (at most 1000 characters)")
    _wait_arg(deny)
    _json_arg(deny)


def _json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")


def _wait_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT,
        metavar="SECONDS",
        help="how long to wait for the ca_worker to act (%(default)s; 0: do not wait)",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


# --- output -----------------------------------------------------------------------------------


def print_json(doc: object) -> None:
    """*doc* as one JSON document on stdout."""
    print(json.dumps(doc, indent=2, default=str))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Rows in columns under *headers*, for people."""
    cells = [[str(c) for c in headers], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: object) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    # One line per row, whatever a name holds.
    return " ".join(str(value).split())


# --- token ------------------------------------------------------------------------------------


async def cmd_token(settings: Settings, args: argparse.Namespace) -> None:
    """``token list|show|revoke``."""
    async with _database(settings) as db:
        if args.token_command == "list":
            await _token_list(db, args)
        elif args.token_command == "show":
            await _token_show(db, args)
        else:
            await _token_revoke(db, args)


def _not_after(token: Token, issued: IssuedCertificate | None) -> datetime | None:
    if issued is not None:
        return issued.not_after.replace(tzinfo=UTC)
    if not token.certificate:
        return None
    from shared.pki import load_certificate

    try:
        return load_certificate(token.certificate).not_valid_after_utc
    except ValueError:
        return None


def token_summary(token: Token, issued: IssuedCertificate | None) -> dict[str, Any]:
    """A token's row in ``token list``."""
    not_after = _not_after(token, issued)
    return {
        "serial": token.serial,
        "state": token.rollout_state,
        "username": token.username,
        "realm": token.realm,
        "ca": token.ca,
        "template": token.template,
        "created": token.created_at.replace(tzinfo=UTC).isoformat(),
        "not_after": not_after.isoformat() if not_after else None,
    }


async def _token_list(db: Database, args: argparse.Namespace) -> None:
    query = select(Token, IssuedCertificate).outerjoin(
        IssuedCertificate, IssuedCertificate.token_serial == Token.serial
    )
    if args.user:
        query = query.where(Token.username == args.user)
    if args.realm:
        query = query.where(Token.realm == args.realm)
    if args.state:
        query = query.where(Token.rollout_state == args.state)
    if args.ca:
        query = query.where(Token.ca == args.ca)
    async with db.read() as session:
        count = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = (
            await session.execute(query.order_by(Token.created_at, Token.serial).limit(args.limit))
        ).all()
    tokens = [token_summary(token, issued) for token, issued in rows]
    if args.json:
        print_json({"tokens": tokens, "count": count})
        return
    print_table(
        ("SERIAL", "STATE", "USER", "REALM", "CA", "CREATED", "NOT AFTER"),
        [
            (
                t["serial"],
                t["state"],
                t["username"],
                t["realm"],
                t["ca"],
                t["created"][:16],
                (t["not_after"] or "")[:10],
            )
            for t in tokens
        ],
    )
    print(f"{len(tokens)} of {count} token(s) shown", file=sys.stderr)


async def token_details(db: Database, serial: str) -> dict[str, Any]:
    """What ``token show`` says of *serial*; no private key, PKCS#12 or password."""
    from services.api.held_requests import held_by
    from services.api.token_view import token_view

    async with db.read() as session:
        token = await session.get(Token, serial)
        if token is None:
            raise _error(f"serial: no token {serial!r}")
        issued = await session.scalar(
            select(IssuedCertificate).where(IssuedCertificate.token_serial == serial)
        )
        request = await session.scalar(select(CARequest).where(CARequest.token_serial == serial))
        key = await session.get(TokenKey, serial)
        holders = await held_by(session, [token])
    view = token_view(token, None, admin=True, held_by=holders.get(serial))
    not_after = _not_after(token, issued)
    view["not_after"] = not_after.isoformat() if not_after else None
    view["certificate_revoked_at"] = (
        issued.revoked_at.replace(tzinfo=UTC).isoformat() if issued and issued.revoked_at else None
    )
    view["revocation_reason"] = issued.revocation_reason if issued else None
    view["ca_request"] = (
        {
            "request_id": request.id,
            "status": request.status,
            "held_by": "certtoken" if request.kind == "approval" else "ca",
            "requester": request.requester,
            "decision": request.decision,
            "decided_by": request.decided_by,
            "reason": request.reason,
        }
        if request is not None
        else None
    )
    # Whether a server-generated PKCS#12 exists, never the thing itself.
    view["pkcs12"] = (
        {
            "keytype": key.keytype,
            "available": bool(key.pkcs12) and key.deleted_at is None,
            "downloads": key.downloads,
            "deleted": key.deleted_at is not None,
        }
        if key is not None
        else None
    )
    return view


async def _token_show(db: Database, args: argparse.Namespace) -> None:
    view = await token_details(db, args.serial)
    if args.json:
        print_json(view)
        return
    request = view["ca_request"] or {}
    pkcs12 = view["pkcs12"]
    lines = [
        ("serial", view["serial"]),
        ("state", view["certtoken_state"]),
        ("active", "yes" if view["active"] else "no"),
        ("owner", f"{view['username']}@{view['user_realm']}" if view["username"] else ""),
        ("ca", view["info"].get("CA", "")),
        ("template", view["info"].get("template", "")),
        ("created", view["created"]),
        ("not after", view["not_after"]),
        ("revoked", view["certificate_revoked_at"]),
        ("revocation reason", view["revocation_reason"]),
        ("request", request.get("request_id")),
        ("request status", request.get("status")),
        ("decided by", request.get("decided_by")),
        ("reason", request.get("reason")),
        (
            "pkcs12",
            f"{'available' if pkcs12['available'] else 'not available'}, "
            f"{pkcs12['downloads']} download(s)"
            if pkcs12
            else "",
        ),
    ]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        if value not in (None, ""):
            print(f"{name.ljust(width)}  {_cell(value)}")
    certificate = view["info"].get("certificate")
    if certificate:
        print(certificate, end="" if certificate.endswith("\n") else "\n")


async def _token_revoke(db: Database, args: argparse.Namespace) -> None:
    from services.api.decisions import revocation
    from services.api.errors import ApiError
    from shared.messaging.outbox import insert_outbox
    from shared.messaging.topology import CA_REVOKE

    async with db.read() as session:
        token = await session.get(Token, args.serial)
    if token is None:
        raise _error(f"serial: no token {args.serial!r}")
    by = operator_name()
    try:
        job = revocation(token, args.reason, by)
    except ApiError as exc:
        raise _error(exc.message) from None
    row = job_row(CA_REVOKE, token.serial, job.to_data())
    audit = _audit(
        "token revoke", token.serial, token.username, token.realm, args.reason, row.correlation_id
    )
    async with db.write() as session:
        await insert_outbox(session, [row])
        session.add(audit)
    state = await _wait_for(db, token.serial, _DONE_STATES["revoke"], args.wait)
    _report(
        args,
        {"serial": token.serial, "action": "revoke", "reason": args.reason, "by": by},
        state,
        f"token {token.serial}: revocation ({args.reason}) handed to the ca_worker",
    )


# --- request ----------------------------------------------------------------------------------


async def cmd_request(settings: Settings, args: argparse.Namespace) -> None:
    """``request list|approve|deny``."""
    async with _database(settings) as db:
        if args.request_command == "list":
            await _request_list(db, args)
        else:
            await _request_decide(db, args)


async def _request_list(db: Database, args: argparse.Namespace) -> None:
    from services.api.held_requests import request_view

    query = select(CARequest).where(CARequest.status == "pending")
    if args.ca:
        query = query.where(CARequest.ca == args.ca)
    async with db.read() as session:
        rows = (await session.scalars(query.order_by(CARequest.created_at))).all()
        infos: dict[str, dict[str, Any]] = {}
        if rows:
            found = await session.execute(
                select(Token.serial, Token.info).where(
                    Token.serial.in_([r.token_serial for r in rows])
                )
            )
            infos = {serial: dict(info or {}) for serial, info in found}
    views = [request_view(row, infos.get(row.token_serial)) for row in rows]
    if args.json:
        print_json({"requests": views, "count": len(views)})
        return
    print_table(
        ("ID", "CA", "SERIAL", "OWNER", "REQUESTER", "WAITING SINCE", "HELD BY", "SUBJECT"),
        [
            (
                v["request_id"],
                v["ca"],
                v["serial"],
                f"{v['username']}@{v['realm']}" if v["username"] else "",
                v["requester"],
                v["time"][:16],
                v["held_by"] if v["decision"] is None else f"ca ({_DECIDED[v['decision']]})",
                v["csr"].get("subject", v["csr"].get("error", "")),
            )
            for v in views
        ],
    )
    print(f"{len(views)} pending request(s)", file=sys.stderr)


async def _request_decide(db: Database, args: argparse.Namespace) -> None:
    from services.api.decisions import decision_job, open_request, record_decision
    from services.api.errors import ApiError

    decision: Literal["approve", "deny"] = (
        "approve" if args.request_command == "approve" else "deny"
    )
    reason = "" if decision == "approve" else args.reason
    if len(reason) > 1000:
        raise _error("--reason: at most 1000 characters")
    async with db.read() as session:
        held_row = await session.get(CARequest, args.id)
    if held_row is None:
        raise _error(f"request: no request {args.id!r}")
    by = operator_name()
    try:
        held = await open_request(db, held_row.ca, args.id, decision)
        kind, data = decision_job(held, decision, by, reason)
        row = job_row(kind, held.id, data)
        audit = _audit(
            f"request {decision}",
            held.token_serial,
            held.username,
            held.realm,
            reason or held.id,
            row.correlation_id,
        )
        await record_decision(db, held, decision, by, row, [audit])
    except ApiError as exc:
        raise _error(exc.message) from None
    state = await _wait_for(db, held.token_serial, _DONE_STATES[decision], args.wait)
    verb = _DECIDED[decision]
    _report(
        args,
        {
            "request_id": held.id,
            "ca": held.ca,
            "serial": held.token_serial,
            "action": decision,
            "by": by,
        },
        state,
        f"request {held.id} ({held.ca}, token {held.token_serial}) {verb}",
    )


# --- shared -----------------------------------------------------------------------------------


def operator_name() -> str:
    """Who decides, as requests and audit rows record it: ``cli:<login>``."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        login = f"uid{os.getuid()}"
    return f"cli:{login}"


def job_row(kind: str, subject: str, data: dict[str, Any]) -> OutboxMessage:
    """An outbox row for a ``ca.*`` job that the running services' relay publishes at once."""
    from shared.events import new_event
    from shared.logs import new_correlation_id
    from shared.messaging.outbox import outbox_message
    from shared.messaging.topology import JOBS_EXCHANGE

    event = new_event(kind, SOURCE, subject, data, new_correlation_id())
    # Unclaimed: no process of this command stays around to publish it; a relay's sweep does.
    return outbox_message(JOBS_EXCHANGE, kind, event, lease=timedelta(0))


def _audit(action: str, serial: str, username: str, realm: str, info: str, cid: str) -> AuditEntry:
    """The audit row of a CLI action: role ``cli``, the login as caller."""
    return AuditEntry(
        time=utcnow(),
        role="cli",
        caller=operator_name().removeprefix("cli:")[:255],
        action=f"certtoken {action}",
        serial=serial,
        username=username,
        realm=realm,
        success=True,
        status=0,
        info=info[:255],
        client="cli",
        correlation_id=cid,
        duration=0.0,
        user_agent="certtoken-cli",
        server=socket.gethostname()[:255],
    )


async def _wait_for(
    db: Database, serial: str, done: set[RolloutState], seconds: float
) -> str | None:
    """The token's state once it is in *done*, or the last seen after *seconds*."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, seconds)
    while True:
        async with db.read() as session:
            state = await session.scalar(select(Token.rollout_state).where(Token.serial == serial))
        if state is None or state in done or loop.time() >= deadline:
            return state
        await asyncio.sleep(_POLL_SECONDS)


def _report(args: argparse.Namespace, doc: dict[str, Any], state: str | None, what: str) -> None:
    """Say what was done and where the token stands; whether the ca_worker acted already."""
    done = state in _DONE_STATES[doc["action"]]
    doc.update({"state": state, "done": done})
    if args.json:
        print_json(doc)
        return
    if done:
        print(f"{what}; token {doc['serial']} is {state}")
    else:
        print(
            f"{what}; token {doc['serial']} is still {state} (the ca_worker acts once the "
            f"services run; `certtoken token show {doc['serial']}` follows it)"
        )


def _error(message: str) -> Exception:
    from services.command_error import CommandError

    return CommandError(message)


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[Database]:
    """The database the settings name, disposed of afterwards; its errors said in one line."""
    from sqlalchemy.exc import DBAPIError

    db = Database.for_settings(settings)
    try:
        yield db
    except DBAPIError as exc:
        raise _error(
            f"database: {exc.orig} (is CERTTOKEN_DATABASE_URL or CERTTOKEN_DATA_DIR right, and "
            "the database migrated with `certtoken db upgrade`?)"
        ) from None
    finally:
        await db.dispose()


HANDLERS: dict[str, Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, None]]] = {
    "token": cmd_token,
    "request": cmd_request,
}
