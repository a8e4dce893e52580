"""Authentication of API calls: privacyIDEA's ``PI-Authorization`` or ``Authorization`` header."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.api.context import ApiContext, get_context
from services.api.errors import ExpiredToken, Forbidden, InvalidToken, MissingToken
from shared.security import ExpiredAccessToken, Identity, InvalidAccessToken, read_token

# privacyIDEA's web UI and privacyideaadm send the token in PI-Authorization.
PI_NAME, NAME = "PI-Authorization", "Authorization"
PI_HEADER, STANDARD_HEADER = PI_NAME.lower(), NAME.lower()


# The dependencies are coroutines though they never await: FastAPI runs a plain function in a
# thread pool, a hop per dependency per request that cost more than the work itself.
async def current_identity(
    request: Request, ctx: Annotated[ApiContext, Depends(get_context)]
) -> Identity:
    """Who is calling, from the access token; 401 when missing or invalid."""
    token = presented_token(
        request.headers.get(PI_HEADER, ""), request.headers.get(STANDARD_HEADER, "")
    )
    try:
        identity = read_token(token, ctx.settings.resolved_secret_key)
    except ExpiredAccessToken:
        raise ExpiredToken(
            "Authorization: the access token has expired; POST /auth again"
        ) from None
    except InvalidAccessToken as exc:
        raise InvalidToken(f"Authorization: invalid access token ({exc})") from None
    request.state.identity = identity
    return identity


def presented_token(pi_header: str, header: str) -> str:
    """The access token of ``PI-Authorization`` and/or ``Authorization`` (raw or Bearer)."""
    given = {name: _token_in(value) for name, value in ((PI_NAME, pi_header), (NAME, header))}
    sent = {token for token in given.values() if token}
    if not sent:
        raise MissingToken(f"{NAME}: missing; POST /auth first")
    if len(sent) > 1:
        raise InvalidToken(f"{PI_NAME} and {NAME} carry different access tokens; send one")
    return sent.pop()


def _token_in(value: str) -> str:
    scheme, _, rest = value.strip().partition(" ")
    return rest.strip() if scheme.lower() == "bearer" and rest.strip() else value.strip()


async def require_admin(identity: Annotated[Identity, Depends(current_identity)]) -> Identity:
    """Only administrators pass."""
    if identity.role != "admin":
        raise Forbidden("this action needs the admin role")
    return identity


Caller = Annotated[Identity, Depends(current_identity)]
Admin = Annotated[Identity, Depends(require_admin)]
Context = Annotated[ApiContext, Depends(get_context)]
