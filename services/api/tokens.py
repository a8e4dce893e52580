"""Token views and queries used by the token routes."""

from __future__ import annotations

from services.api.context import ApiContext
from services.api.errors import Conflict, Forbidden, NotFound
from shared.db.models import Token
from shared.echo import echo
from shared.security import Identity
from shared.token_states import ImpossibleTransition, Trigger, state_of, transition


async def token_for(ctx: ApiContext, caller: Identity, serial: str) -> Token:
    """The token *serial*: 404 when there is none, 403 when a user asks for another's."""
    async with ctx.db.read() as session:
        token = await session.get(Token, serial)
    if token is None:
        raise NotFound(f"serial: no token {echo(serial)}")
    if caller.role == "user" and (token.username, token.realm) != (caller.username, caller.realm):
        raise Forbidden(f"serial: token {serial} belongs to another user")
    return token


def require_transition(field: str, serial: str, state: str | None, trigger: Trigger) -> None:
    """409 naming the token's state and the action unless a token in *state* may take it."""
    try:
        transition(state_of(state), trigger)
    except ImpossibleTransition as refused:
        raise Conflict(
            f"{field}: token {serial} is {refused.state_name}; cannot {trigger.value} it"
        ) from None


def page_links(count: int, page: int, pagesize: int) -> dict[str, int | None]:
    """privacyIDEA's paging fields for *page* of *count* items."""
    last = max(1, -(-count // pagesize))
    return {
        "count": count,
        "current": page,
        "next": page + 1 if page < last else None,
        "prev": page - 1 if page > 1 else None,
    }
