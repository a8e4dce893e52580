"""``/policy/``: privacyIDEA-style policies, administered by admins.

``POST /policy/<name>`` creates or replaces a policy from ``scope``, ``action`` (``"a=1, b"``
or an object), ``realm``, ``user``, ``adminrealm`` (comma-separated or lists), ``active``
and ``priority``. Each field is checked before anything is stored.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from services.api.auth import Admin, Context
from services.api.context import ApiContext
from services.api.envelope import ok
from services.api.errors import NotFound, ParameterError
from services.api.params import read_params
from services.api.policies.catalog import CA_CONNECTOR, TEMPLATE, TRUSTED_CA_PATH, Scope
from services.api.policies.spec import (
    PolicySpec,
    parse_policy,
    parse_scope,
    policy_view,
)
from services.api.policies.store import (
    delete_policy,
    get_policy,
    list_policies,
    save_policy,
    trust_path_problem,
)
from services.api.stable_ids import stable_id
from shared.ca_templates import DEFAULT_TEMPLATE
from shared.db.models import CAConnector, CATemplate
from shared.echo import echo

router = APIRouter(prefix="/policy", tags=["policy"])


@router.get("/")
async def list_all(
    ctx: Context, _admin: Admin, scope: str | None = Query(default=None, max_length=20)
) -> JSONResponse:
    """All policies by name, optionally of one scope."""
    try:
        wanted = parse_scope(scope) if scope else None
    except ValueError as exc:
        raise ParameterError(str(exc)) from None
    return ok([policy_view(p) for p in await list_policies(ctx.db, wanted)])


@router.get("/{name}")
async def get_one(name: str, ctx: Context, _admin: Admin) -> JSONResponse:
    """The policy *name* as a one-element list, an empty one when there is none (privacyIDEA)."""
    policy = await get_policy(ctx.db, name)
    return ok([] if policy is None else [policy_view(policy)])


@router.post("/{name}")
async def set_policy(name: str, request: Request, ctx: Context, _admin: Admin) -> JSONResponse:
    """Create or replace a policy."""
    try:
        policy = parse_policy(name, await read_params(request))
    except ValueError as exc:
        raise ParameterError(str(exc)) from None
    await _check_references(ctx, policy)
    created = await save_policy(ctx.db, policy)
    return ok({f"setPolicy {name}": stable_id(name)}, {"created": created})


@router.delete("/{name}")
async def delete_one(name: str, ctx: Context, _admin: Admin) -> JSONResponse:
    """Delete a policy; its number answers, as privacyIDEA's id does."""
    if not await delete_policy(ctx.db, name):
        raise NotFound(f"policy: no policy named {echo(name)}")
    return ok(stable_id(name))


async def _check_references(ctx: ApiContext, policy: PolicySpec) -> None:
    """The CA connector, template and trust store a policy names must exist now."""
    path = policy.action.get(TRUSTED_CA_PATH)
    if isinstance(path, str):
        problem = await asyncio.to_thread(trust_path_problem, path)
        if problem:
            raise ParameterError(f"action: {TRUSTED_CA_PATH} {problem}")
    ca = policy.action.get(CA_CONNECTOR)
    template = policy.action.get(TEMPLATE)
    if policy.scope != Scope.ENROLL or (ca is None and template is None):
        return
    async with ctx.db.read() as session:
        if isinstance(ca, str) and await session.get(CAConnector, ca) is None:
            raise ParameterError(f"action: {CA_CONNECTOR} names no CA connector {echo(ca)}")
        if isinstance(template, str) and template != DEFAULT_TEMPLATE:
            query = select(CATemplate.ca).where(CATemplate.name == template)
            if isinstance(ca, str):
                query = query.where(CATemplate.ca == ca)
            if await session.scalar(query.limit(1)) is None:
                where = f"CA connector {echo(ca)}" if isinstance(ca, str) else "any CA connector"
                raise ParameterError(
                    f"action: {TEMPLATE} names no template {echo(template)} of {where}"
                )
