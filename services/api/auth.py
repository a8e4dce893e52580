"""Authentication of API calls: privacyIDEA's raw ``Authorization`` header or Bearer."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.api.context import ApiContext, get_context
from services.api.errors import AuthError, Forbidden
from shared.security import Identity, InvalidAccessToken, read_token


def current_identity(
    request: Request, ctx: Annotated[ApiContext, Depends(get_context)]
) -> Identity:
    """Who is calling, from the access token; 401 when missing or invalid."""
    header = request.headers.get("authorization", "").strip()
    if not header:
        raise AuthError("Authorization: missing; POST /auth first")
    scheme, _, rest = header.partition(" ")
    token = rest.strip() if scheme.lower() == "bearer" and rest else header
    try:
        identity = read_token(token, ctx.settings.resolved_secret_key)
    except InvalidAccessToken as exc:
        raise AuthError(f"Authorization: invalid access token ({exc})") from None
    request.state.identity = identity
    return identity


def require_admin(identity: Annotated[Identity, Depends(current_identity)]) -> Identity:
    """Only administrators pass."""
    if identity.role != "admin":
        raise Forbidden("this action needs the admin role")
    return identity


Caller = Annotated[Identity, Depends(current_identity)]
Admin = Annotated[Identity, Depends(require_admin)]
Context = Annotated[ApiContext, Depends(get_context)]
