"""Token views and queries used by the token routes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.api.errors import ApiError, CAError, Conflict, Forbidden, Locked, NotFound
from shared.db.models import Token
from shared.echo import echo
from shared.security import Identity
from shared.token_states import ImpossibleTransition, Trigger, state_of, transition

if TYPE_CHECKING:
    # Annotations only: the CLI's decisions use this module without loading the api.
    from services.api.context import ApiContext


async def token_for(ctx: ApiContext, caller: Identity, serial: str) -> Token:
    """The token *serial*: 404 when there is none, 403 when a user asks for another's."""
    async with ctx.db.read() as session:
        token = await session.get(Token, serial)
    if token is None:
        raise NotFound(f"serial: no token {echo(serial)}")
    if caller.role == "user" and (token.username, token.realm) != (caller.username, caller.realm):
        raise Forbidden(f"serial: token {serial} belongs to another user")
    return token


# privacyIDEA's answers where it shares the action: a revocation the CA refuses (a second
# one among them) and enabling a revoked (locked) token are 400s with its codes.
_REFUSALS: dict[Trigger, type[ApiError]] = {Trigger.REVOKE: CAError, Trigger.ENABLE: Locked}


def require_transition(field: str, serial: str, state: str | None, trigger: Trigger) -> None:
    """An error naming the token's state and the action unless a token in *state* may take it.

    409 for certtoken's own actions; privacyIDEA's status and code for the ones it shares.
    """
    try:
        transition(state_of(state), trigger)
    except ImpossibleTransition as refused:
        error = _REFUSALS.get(trigger, Conflict)
        raise error(
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
