"""``/realm/``: the realms of the internal user store in privacyIDEA's shape (read-only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import select

from services.api.auth import Admin, Context
from services.api.envelope import ok
from services.api.policies.reach import visible_realms
from services.api.policies.store import current_policies
from services.api.stable_ids import stable_id
from shared.db.models import User
from shared.domain import USER_RESOLVER

router = APIRouter(prefix="/realm", tags=["realm"])

# privacyIDEA's resolver type closest to certtoken's store: users in a SQL table.
RESOLVER_TYPE = "sqlresolver"


def realms_view(realms: list[str]) -> dict[str, dict[str, Any]]:
    """Each realm with privacyIDEA's keys; ``default`` only when it is the only realm."""
    return {
        realm: {
            "default": len(realms) == 1,
            "id": stable_id(realm),
            "resolver": [
                {"name": USER_RESOLVER, "node": "", "priority": None, "type": RESOLVER_TYPE}
            ],
        }
        for realm in realms
    }


@router.get("/")
async def list_realms(ctx: Context, admin: Admin) -> JSONResponse:
    """The realms (those with users) that the admin's policies cover."""
    async with ctx.db.read() as session:
        realms = list(await session.scalars(select(User.realm).distinct().order_by(User.realm)))
    shown = visible_realms(await current_policies(ctx.db), admin, realms)
    return ok(realms_view(shown))
