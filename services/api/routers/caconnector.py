"""``/caconnector/``: CA connectors and their templates; secrets are write-only."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.auth import Admin, Context
from services.api.envelope import ok
from services.api.errors import Conflict, NotFound, ParameterError
from services.api.params import read_params
from shared.ca_hosts import HostPolicy, redact_url
from shared.ca_templates import DEFAULT_TEMPLATE, TEMPLATE_NAME, TemplateOptions, template_options
from shared.cfssl_options import SECRET_OPTIONS as CFSSL_SECRETS
from shared.cfssl_options import cfssl_options
from shared.db.models import (
    CAConnector,
    CAGeneration,
    CAPublication,
    CARequest,
    CATemplate,
    IssuedCertificate,
    Token,
)
from shared.echo import echo
from shared.security import SecretBox

router = APIRouter(prefix="/caconnector", tags=["caconnector"])

CONNECTOR_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
# Option names that hold file paths to key material or secrets; shown as present, never as value.
SECRET_OPTIONS = frozenset({"cakey", "password", "passphrase", "auth_key", "key"})


def connector_view(
    connector: CAConnector, templates: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A connector as the API shows it, with its *templates*: never a secret's value."""
    data = {
        key: ("***" if key in SECRET_OPTIONS or key.endswith("_secret") else value)
        for key, value in connector.options.items()
        if not key.startswith("_")
    }
    for name in _sealed_names(connector):
        data[name] = "***"
    if isinstance(data.get("url"), str):
        # Stored before user names and passwords in URLs were refused.
        data["url"] = redact_url(data["url"])
    return {
        "connectorname": connector.name,
        "type": connector.type,
        "data": data,
        "templates": templates or {},
        "cacert": connector.cacert,
    }


async def templates_of(session: AsyncSession, names: list[str]) -> dict[str, dict[str, Any]]:
    """The templates of the connectors *names* by name, the built-in default first."""
    rows = await session.scalars(
        select(CATemplate).where(CATemplate.ca.in_(names)).order_by(CATemplate.name)
    )
    found: dict[str, dict[str, Any]] = {
        name: {DEFAULT_TEMPLATE: _template_view(TemplateOptions(), builtin=True)} for name in names
    }
    for row in rows:
        found[row.ca][row.name] = _template_view(template_options(dict(row.options)), builtin=False)
    return found


async def connector_views(session: AsyncSession, name: str | None = None) -> list[dict[str, Any]]:
    """All connectors (or the one named *name*) as the API shows them, by name."""
    query = select(CAConnector).order_by(CAConnector.name)
    if name is not None:
        query = query.where(CAConnector.name == name)
    rows = (await session.scalars(query)).all()
    templates = await templates_of(session, [c.name for c in rows])
    return [connector_view(c, templates[c.name]) for c in rows]


def _sealed_names(connector: CAConnector) -> list[str]:
    """The names (never the values) of the connector's sealed secrets, from its marker."""
    marker = connector.options.get("_secret_names")
    return [str(n) for n in marker] if isinstance(marker, list) else []


@router.get("/")
async def list_connectors(ctx: Context, _admin: Admin) -> JSONResponse:
    """All CA connectors."""
    async with ctx.db.read() as session:
        return ok(await connector_views(session))


@router.get("/{name}")
async def get_connector(name: str, ctx: Context, _admin: Admin) -> JSONResponse:
    """The connector *name* as a one-element list (empty when there is none), as privacyIDEA."""
    async with ctx.db.read() as session:
        return ok(await connector_views(session, name))


@router.post("/{name}")
async def set_connector(
    request: Request,
    ctx: Context,
    _admin: Admin,
    name: str = Path(pattern=CONNECTOR_NAME),
) -> JSONResponse:
    """Create or update a remote CA connector: ``{type: cfssl, url, profile, auth_key, ...}``."""
    params = await read_params(request)
    kind = str(params.pop("type", "") or "")
    if kind == "local":
        raise ParameterError(
            "type: local CAs are created with `certtoken ca create` (their key stays with the "
            "ca_worker); set their templates with POST /caconnector/<name>/templates/<template>"
        )
    if kind != "cfssl":
        raise ParameterError(f"type: unsupported connector type {echo(kind)}; supported: cfssl")
    params.pop("connectorname", None)
    given_secrets = {k: params.pop(k) for k in list(params) if k in CFSSL_SECRETS}
    for key, value in given_secrets.items():
        if not isinstance(value, str):
            raise ParameterError(f"{key}: must be a string")
        if key == "auth_key" and value:
            try:
                bytes.fromhex(value)
            except ValueError:
                raise ParameterError("auth_key: must be hexadecimal") from None
    try:
        options = cfssl_options(params)
    except ValueError as exc:
        raise ParameterError(str(exc)) from None
    refused = await HostPolicy(ctx.settings.ca_allowed_hosts).save_refusal(options.url)
    if refused:
        raise ParameterError(f"url: {refused}")
    box = SecretBox(ctx.settings.resolved_secret_key)
    async with ctx.db.write() as session:
        row = await session.get(CAConnector, name)
        if row is not None and row.type != kind:
            raise Conflict(f"type: connector {name!r} is of type {row.type!r}; delete it first")
        secrets: dict[str, str] = {}
        if row is not None and row.secrets:
            try:
                secrets = json.loads(box.open(row.secrets))
            except ValueError:
                # Sealed under another secret key: only a complete new set can replace them.
                if not given_secrets:
                    raise Conflict(
                        "auth_key: the stored secrets do not open with this secret key; "
                        "send them again"
                    ) from None
        secrets.update({k: v for k, v in given_secrets.items() if v})
        for key in [k for k, v in given_secrets.items() if not v]:
            secrets.pop(key, None)
        stored = options.model_dump()
        if secrets:
            stored["_secret_names"] = sorted(secrets)
        sealed = box.seal(json.dumps(secrets).encode()) if secrets else ""
        created = row is None
        if row is None:
            row = CAConnector(name=name, type=kind)
            session.add(row)
        row.options = stored
        row.cacert = options.cacert
        row.secrets = sealed
    return ok(True, {"connectorname": name, "created": created})


@router.delete("/{name}")
async def delete_connector(name: str, ctx: Context, _admin: Admin) -> JSONResponse:
    """Delete a connector no token uses; its templates and publications go with it."""
    async with ctx.db.write() as session:
        row = await session.get(CAConnector, name)
        if row is None:
            raise NotFound(f"caconnector: no CA connector named {name!r}")
        tokens = await session.scalar(select(func.count()).where(Token.ca == name)) or 0
        if tokens:
            raise Conflict(f"caconnector: {tokens} token(s) use CA connector {name!r}")
        issued = await session.scalar(select(func.count()).where(IssuedCertificate.ca == name)) or 0
        if issued:
            raise Conflict(
                f"caconnector: {issued} certificate(s) issued through {name!r} are on record "
                "(revocation status is still served)"
            )
        await session.execute(delete(CATemplate).where(CATemplate.ca == name))
        await session.execute(delete(CAPublication).where(CAPublication.ca == name))
        await session.execute(delete(CAGeneration).where(CAGeneration.ca == name))
        await session.execute(delete(CARequest).where(CARequest.ca == name))
        await session.delete(row)
    return ok(True)


@router.get("/{name}/templates")
async def list_templates(name: str, ctx: Context, _admin: Admin) -> JSONResponse:
    """The connector's templates, the built-in default first."""
    async with ctx.db.read() as session:
        if await session.get(CAConnector, name) is None:
            raise NotFound(f"caconnector: no CA connector named {name!r}")
        templates = await templates_of(session, [name])
    return ok({"templates": templates[name]})


def _template_view(options: TemplateOptions, *, builtin: bool) -> dict[str, Any]:
    view = options.model_dump(mode="json")
    view["builtin"] = builtin
    return view


@router.post("/{name}/templates/{template}")
async def set_template(
    request: Request,
    name: str,
    ctx: Context,
    _admin: Admin,
    template: str = Path(pattern=TEMPLATE_NAME),
) -> JSONResponse:
    """Create or replace a template of the connector."""
    if template == DEFAULT_TEMPLATE:
        raise ParameterError("template: the default template is built in and stays as it is")
    params = await read_params(request)
    try:
        options = template_options(params)
    except ValueError as exc:
        raise ParameterError(str(exc)) from None
    async with ctx.db.write() as session:
        if await session.get(CAConnector, name) is None:
            raise NotFound(f"caconnector: no CA connector named {name!r}")
        row = await session.get(CATemplate, (name, template))
        if row is None:
            session.add(CATemplate(ca=name, name=template, options=options.model_dump(mode="json")))
        else:
            row.options = options.model_dump(mode="json")
    return ok(True, {"template": template, "options": options.model_dump(mode="json")})


@router.delete("/{name}/templates/{template}")
async def delete_template(name: str, template: str, ctx: Context, _admin: Admin) -> JSONResponse:
    """Delete a template (tokens enrolled with it keep their certificates)."""
    async with ctx.db.write() as session:
        result = await session.execute(
            delete(CATemplate).where(CATemplate.ca == name, CATemplate.name == template)
        )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFound(f"template: CA connector {name!r} has no template {echo(template)}")
    return ok(True)
