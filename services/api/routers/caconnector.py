"""``/caconnector/``: configured CA connectors, never with a secret."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import select

from services.api.auth import Admin, Context
from services.api.envelope import ok
from services.api.errors import NotFound
from shared.db.models import CAConnector

router = APIRouter(prefix="/caconnector", tags=["caconnector"])

# Option names that hold file paths to key material or secrets; shown as present, never as value.
SECRET_OPTIONS = frozenset({"cakey", "password", "passphrase", "auth_key", "key"})


def connector_view(connector: CAConnector) -> dict[str, Any]:
    """A connector as the API shows it."""
    data = {
        key: ("***" if key in SECRET_OPTIONS or key.endswith("_secret") else value)
        for key, value in connector.options.items()
    }
    return {
        "connectorname": connector.name,
        "type": connector.type,
        "data": data,
        "cacert": connector.cacert,
    }


@router.get("/")
async def list_connectors(ctx: Context, _admin: Admin) -> JSONResponse:
    """All CA connectors."""
    async with ctx.db.read() as session:
        rows = (await session.scalars(select(CAConnector).order_by(CAConnector.name))).all()
    return ok([connector_view(c) for c in rows])


@router.get("/{name}")
async def get_connector(name: str, ctx: Context, _admin: Admin) -> JSONResponse:
    """One CA connector with its CA certificate in PEM."""
    async with ctx.db.read() as session:
        connector = await session.get(CAConnector, name)
    if connector is None:
        raise NotFound(f"caconnector: no CA connector named {name!r}")
    return ok(connector_view(connector))
