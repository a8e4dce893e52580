"""``/user/``: the internal user store; a realm exists once it has a user."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.exc import IntegrityError

from services.api.auth import Admin, Context
from services.api.envelope import ok
from services.api.errors import Conflict, NotFound
from services.api.params import body_doc, parse
from services.api.schemas import REALM, UserCreate
from shared.db.models import User
from shared.domain import USER_RESOLVER
from shared.echo import echo
from shared.security import hash_password

router = APIRouter(prefix="/user", tags=["user"])


def user_view(user: User) -> dict[str, object]:
    """A user with privacyIDEA's keys (the id as text, like its resolvers): never the hash."""
    return {
        "userid": str(user.id),
        "username": user.username,
        "realm": user.realm,
        "resolver": USER_RESOLVER,
        "editable": True,
        "email": user.email,
        "givenname": user.givenname,
        "surname": user.surname,
        # Not kept by certtoken's store: empty, as privacyIDEA shows an unset attribute.
        "description": "",
        "mobile": "",
        "phone": "",
    }


@router.post("/", openapi_extra=body_doc(UserCreate))
async def create_user(request: Request, ctx: Context, _admin: Admin) -> JSONResponse:
    """Create a user in a realm."""
    data = await parse(request, UserCreate)
    password_hash = None
    if data.password is not None:
        password_hash = await asyncio.to_thread(hash_password, data.password)
    user = User(
        username=data.user,
        realm=data.realm,
        email=str(data.email or ""),
        givenname=data.givenname,
        surname=data.surname,
        password_hash=password_hash,
    )
    try:
        async with ctx.db.write() as session:
            session.add(user)
    except IntegrityError:
        raise Conflict(
            f"user: {echo(data.user)} already exists in realm {echo(data.realm)}"
        ) from None
    return ok(user.id)


@router.get("/")
async def list_users(
    ctx: Context,
    _admin: Admin,
    realm: str | None = Query(default=None, pattern=REALM),
    username: str | None = Query(default=None, max_length=120),
) -> JSONResponse:
    """List users, optionally of one realm or by name."""
    query = select(User).order_by(User.realm, User.username)
    if realm:
        query = query.where(User.realm == realm)
    if username:
        query = query.where(username_matches(username))
    async with ctx.db.read() as session:
        users = (await session.scalars(query)).all()
    return ok([user_view(u) for u in users])


def like_pattern(wanted: str) -> str:
    """A SQL LIKE pattern (escape ``\\``) for *wanted*, where only ``*`` is a wildcard."""
    escaped = wanted.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def username_matches(wanted: str) -> ColumnElement[bool]:
    """Users named *wanted*; with ``*`` a case-insensitive wildcard search, as privacyIDEA's."""
    if "*" not in wanted:
        return User.username == wanted
    return User.username.ilike(like_pattern(wanted), escape="\\")


@router.delete("/{realm}/{username}")
async def delete_user(realm: str, username: str, ctx: Context, _admin: Admin) -> JSONResponse:
    """Delete a user; its tokens stay, as in privacyIDEA."""
    async with ctx.db.write() as session:
        result = await session.execute(
            delete(User).where(User.realm == realm, User.username == username)
        )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFound(f"user: no user {echo(username)} in realm {echo(realm)}")
    return ok(True)
