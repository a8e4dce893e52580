"""``POST /auth``: exchange credentials for an access token."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from services.api.auth import Context
from services.api.envelope import ok
from services.api.errors import AuthError
from services.api.params import body_doc, parse
from services.api.schemas import AuthRequest
from shared.db.models import Admin
from shared.security import Identity, hash_password, issue_token, verify_password

router = APIRouter(tags=["auth"])

# Verified against when the name is unknown, so that a miss costs as long as a hit.
_DUMMY_HASH = hash_password("certtoken-no-such-account")


@router.post("/auth", openapi_extra=body_doc(AuthRequest))
async def authenticate(request: Request, ctx: Context) -> JSONResponse:
    """Check an admin's credentials and return a signed, expiring access token."""
    creds = await parse(request, AuthRequest)
    async with ctx.db.read() as session:
        admin = await session.scalar(select(Admin).where(Admin.name == creds.username))
    stored = admin.password_hash if admin else _DUMMY_HASH
    # scrypt is deliberately slow: keep it off the event loop.
    valid = await asyncio.to_thread(verify_password, creds.password, stored)
    if admin is None or not valid:
        raise AuthError("username or password is wrong")
    identity = Identity(username=admin.name, role="admin")
    token = issue_token(
        identity, ctx.settings.resolved_secret_key, ctx.settings.jwt_lifetime_seconds
    )
    return ok({"token": token, "role": identity.role, "username": identity.username, "realm": ""})
