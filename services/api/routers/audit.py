"""``GET /audit/``: the audit log, filtered and paged, for administrators."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from sqlalchemy import ColumnElement, func, select

from services.api.auth import Admin, Context
from services.api.envelope import ok
from services.api.errors import ParameterError
from services.api.params import Page, PageSize
from services.api.tokens import page_links
from shared.db.models import AuditEntry

router = APIRouter(prefix="/audit", tags=["audit"])


# privacyIDEA 3.14's columns, in its order; each row has them all, and certtoken's own after.
AUDIT_COLUMNS = (
    "number",
    "action",
    "success",
    "authentication",
    "serial",
    "date",
    "startdate",
    "duration",
    "token_type",
    "user",
    "realm",
    "administrator",
    "action_detail",
    "info",
    "privacyidea_server",
    "client",
    "user_agent",
    "user_agent_version",
    "log_level",
    "policies",
    "clearance_level",
    "sig_check",
    "missing_line",
    "resolver",
    "thread_id",
    "container_serial",
    "container_type",
)
LOGIN_ACTION = "POST /auth"
# Every certtoken token is a certificate token.
TOKEN_TYPE = "certificate"
# privacyIDEA's level names; certtoken has no other.
DEFAULT_LEVEL = "default"


def user_agent_parts(header: str) -> tuple[str, str]:
    """privacyIDEA's user_agent and user_agent_version: the first product and its version."""
    product = header.split(" ", 1)[0]
    name, _, version = product.partition("/")
    return name, version


def audit_view(entry: AuditEntry) -> dict[str, Any]:
    """An audit row with privacyIDEA's columns (empty where certtoken has no value)."""
    agent, agent_version = user_agent_parts(entry.user_agent)
    login = entry.action == LOGIN_ACTION
    view: dict[str, Any] = dict.fromkeys(AUDIT_COLUMNS, "")
    view.update(
        {
            "number": entry.id,
            "action": entry.action,
            "success": int(entry.success),
            "authentication": ("ACCEPT" if entry.success else "REJECT") if login else "",
            "serial": entry.serial,
            "date": (entry.time + timedelta(seconds=entry.duration)).isoformat(),
            "startdate": entry.time.isoformat(),
            "duration": entry.duration,
            "token_type": TOKEN_TYPE if entry.serial else "",
            "user": entry.username,
            "realm": entry.realm,
            "administrator": entry.caller if entry.role == "admin" else "",
            "info": entry.info,
            "privacyidea_server": entry.server,
            "client": entry.client,
            "user_agent": agent,
            "user_agent_version": agent_version,
            "log_level": DEFAULT_LEVEL,
            "clearance_level": DEFAULT_LEVEL,
            "role": entry.role,
            "caller": entry.caller,
            "status": entry.status,
            "correlation_id": entry.correlation_id,
        }
    )
    return view


def text_filter(column: Any, value: str) -> ColumnElement[bool]:
    """Equality, or a LIKE when *value* holds privacyIDEA's ``*`` wildcard."""
    if "*" not in value:
        result: ColumnElement[bool] = column == value
        return result
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern: ColumnElement[bool] = column.like(escaped.replace("*", "%"), escape="\\")
    return pattern


def _utc(value: datetime | None, field: str) -> datetime | None:
    """A time filter in UTC (a naive one is meant in UTC); 400 when UTC has no such time."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ParameterError(f"{field}: outside the years 1 to 9999 in UTC") from None


@router.get("/")
async def list_audit(
    ctx: Context,
    _admin: Admin,
    action: str | None = Query(default=None, max_length=255),
    user: str | None = Query(default=None, max_length=120),
    realm: str | None = Query(default=None, max_length=120),
    serial: str | None = Query(default=None, max_length=40),
    role: str | None = Query(default=None, max_length=20),
    caller: str | None = Query(default=None, max_length=255),
    success: bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    page: Page = 1,
    pagesize: PageSize = 15,
    page_size: PageSize | None = None,
) -> JSONResponse:
    """Audit rows matching the filters (times in ISO 8601, naive = UTC), newest first, paged."""
    pagesize = page_size or pagesize  # privacyIDEA's name for it here
    since, until = _utc(since, "since"), _utc(until, "until")
    if since is not None and until is not None and since > until:
        raise ParameterError("since: must not be after until")
    query = select(AuditEntry)
    for column, value in (
        (AuditEntry.action, action),
        (AuditEntry.username, user),
        (AuditEntry.realm, realm),
        (AuditEntry.serial, serial),
        (AuditEntry.role, role),
        (AuditEntry.caller, caller),
    ):
        if value:
            query = query.where(text_filter(column, value))
    if success is not None:
        query = query.where(AuditEntry.success == success)
    if since is not None:
        query = query.where(AuditEntry.time >= since)
    if until is not None:
        query = query.where(AuditEntry.time <= until)
    async with ctx.db.read() as session:
        count = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = await session.scalars(
            query.order_by(AuditEntry.id.desc()).offset((page - 1) * pagesize).limit(pagesize)
        )
        entries = [audit_view(e) for e in rows]
    return ok(
        {
            "auditcolumns": list(AUDIT_COLUMNS),
            "auditdata": entries,
            **page_links(count, page, pagesize),
        }
    )
