"""``/system/names/...``: what the web UI lists for enrollment, without configuration."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.api.auth import Caller, Context
from services.api.envelope import ok
from services.api.errors import Forbidden
from services.api.policies import Action, EnrollRules, enroll_rules
from services.api.policies.reach import base_refusal
from services.api.policies.store import current_policies
from services.api.routers.caconnector import connector_views

router = APIRouter(prefix="/system", tags=["system"])


@router.get("/names/caconnector")
async def caconnector_names(ctx: Context, caller: Caller) -> JSONResponse:
    """The CA connectors with their templates, ``data`` left empty; for whoever may enroll.

    A user sees only the CA connector and template their ``enrollment`` policies fix, if any.
    """
    problem = base_refusal(await current_policies(ctx.db), caller, Action.ENROLL)
    if problem:
        raise Forbidden(problem)
    async with ctx.db.read() as session:
        connectors = await connector_views(session)
    if caller.role == "user":
        rules = await enroll_rules(ctx, caller, caller.username, caller.realm)
        connectors = fixed_by(rules, connectors)
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


def fixed_by(rules: EnrollRules, connectors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """*connectors* narrowed to the CA connector and template *rules* fix (all when none)."""
    if rules.ca:
        connectors = [c for c in connectors if c["connectorname"] == rules.ca]
    if rules.template:
        template = rules.template
        # A connector without the fixed template could not sign for this user: left out.
        connectors = [
            {**c, "templates": {template: c["templates"][template]}}
            for c in connectors
            if template in c["templates"]
        ]
    return connectors
