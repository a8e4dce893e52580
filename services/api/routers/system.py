"""``/system/names/...``: what the web UI lists for enrollment, without configuration."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.api.auth import Caller, Context
from services.api.envelope import ok
from services.api.errors import Forbidden
from services.api.policies import Action
from services.api.policies.reach import base_refusal
from services.api.policies.store import current_policies
from services.api.routers.caconnector import connector_views

router = APIRouter(prefix="/system", tags=["system"])


@router.get("/names/caconnector")
async def caconnector_names(ctx: Context, caller: Caller) -> JSONResponse:
    """The CA connectors with their templates, ``data`` left empty; for whoever may enroll."""
    problem = base_refusal(await current_policies(ctx.db), caller, Action.ENROLL)
    if problem:
        raise Forbidden(problem)
    async with ctx.db.read() as session:
        connectors = await connector_views(session)
    return ok(
        [
            {
                "connectorname": c["connectorname"],
                "data": {},
                "templates": c["templates"],
                "type": c["type"],
            }
            for c in connectors
        ]
    )
