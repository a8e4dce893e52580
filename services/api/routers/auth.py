"""``POST /auth``: exchange credentials for an access token.

Administrators log in with their name alone. Users of the internal store log in as
``user@realm`` or with ``realm``; a name that is both an administrator's and a user's
means the administrator only when no realm is given (neither as ``realm`` nor after ``@``,
unless the administrator's name itself holds the ``@``).
Users of a realm listed in ``superuser_realms`` log in with the admin role and their realm.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from services.api.audit import note
from services.api.auth import Context
from services.api.context import ApiContext
from services.api.envelope import ACCEPT, ok
from services.api.errors import AuthError
from services.api.login import ADMIN_REALM, LoginThrottle, split_login
from services.api.params import body_doc, parse
from services.api.policies import menus, rights_of
from services.api.ratelimit import Limited
from services.api.schemas import AuthRequest
from services.api.ui_settings import ui_settings
from shared.db.models import Admin, User
from shared.security import Identity, hash_password, issue_token, verify_password

router = APIRouter(tags=["auth"])

# Verified against when the name is unknown, so that a miss costs as long as a hit.
_DUMMY_HASH = hash_password("certtoken-no-such-account")
_WRONG = "username or password is wrong"


@router.post("/auth", openapi_extra=body_doc(AuthRequest), dependencies=[Depends(Limited("auth"))])
async def authenticate(request: Request, ctx: Context) -> JSONResponse:
    """Check credentials; answer a signed, expiring access token, the rights and UI settings."""
    creds = await parse(request, AuthRequest)
    admin = None
    if not creds.realm:
        async with ctx.db.read() as session:
            admin = await session.scalar(select(Admin).where(Admin.name == creds.username))
    if admin is not None:
        note(request, user=admin.name)
        identity = await _admin_login(request, ctx, admin, creds.password)
    else:
        identity = await _user_login(request, ctx, creds.username, creds.password, creds.realm)
    request.state.identity = identity
    token = issue_token(
        identity, ctx.settings.resolved_secret_key, ctx.settings.jwt_lifetime_seconds
    )
    granted = await rights_of(ctx, identity)
    return ok(
        {
            **ui_settings(ctx.settings.log_level),
            "token": token,
            "role": identity.role,
            "username": identity.username,
            "realm": identity.realm,
            "rights": granted,
            "menus": menus(granted),
        },
        authentication=ACCEPT,
    )


async def _admin_login(request: Request, ctx: ApiContext, admin: Admin, password: str) -> Identity:
    """An administrator, when the password is right and the login not locked (as for users)."""
    throttle = _throttle(ctx)
    if not await throttle.begin(ADMIN_REALM, admin.name):
        await _verify(password, None)
        note(request, info="login locked after repeated wrong passwords")
        raise AuthError(_WRONG)
    if not await _verify(password, admin.password_hash):
        await throttle.failed(ADMIN_REALM, admin.name)
        raise AuthError(_WRONG)
    await throttle.succeeded(ADMIN_REALM, admin.name)
    return Identity(username=admin.name, role="admin")


async def _user_login(
    request: Request, ctx: ApiContext, username: str, password: str, realm: str | None
) -> Identity:
    """A user of the internal store, when the password is right and the login not locked."""
    target = split_login(username, realm)
    if target is None:
        await _verify(password, None)
        raise AuthError(_WRONG)
    name, user_realm = target
    note(request, user=name, realm=user_realm)
    async with ctx.db.read() as session:
        user = await session.scalar(
            select(User).where(User.realm == user_realm, User.username == name)
        )
    if user is None or user.password_hash is None:
        await _verify(password, None)
        if user is not None:
            note(request, info="user has no password")
        raise AuthError(_WRONG)
    throttle = _throttle(ctx)
    if not await throttle.begin(user_realm, name):
        # The same answer as a wrong password: a lock must not tell that the user exists.
        await _verify(password, None)
        note(request, info="login locked after repeated wrong passwords")
        raise AuthError(_WRONG)
    if not await _verify(password, user.password_hash):
        await throttle.failed(user_realm, name)
        raise AuthError(_WRONG)
    await throttle.succeeded(user_realm, name)
    # privacyIDEA's superuser realms: their users are administrators who keep their realm.
    role = "admin" if user_realm in ctx.settings.superuser_realms else "user"
    return Identity(username=name, role=role, realm=user_realm)


def _throttle(ctx: ApiContext) -> LoginThrottle:
    return LoginThrottle(
        ctx.db, ctx.settings.login_max_failures, ctx.settings.login_lockout_seconds
    )


async def _verify(password: str, stored: str | None) -> bool:
    """scrypt is deliberately slow: keep it off the event loop."""
    return await asyncio.to_thread(verify_password, password, stored or _DUMMY_HASH) and (
        stored is not None
    )
