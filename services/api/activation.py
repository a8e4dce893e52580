"""``POST /token/disable`` and ``/token/enable``: a token's active flag, as privacyIDEA sets it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.context import ApiContext
from services.api.errors import Forbidden, NotFound, ParameterError, UnknownUser
from services.api.jobs import SOURCE
from services.api.login import split_login
from services.api.policies import Action, require_action
from services.api.policies.decisions import active_limit_problem, enroll_rules
from services.api.schemas import REALM
from services.api.token_counts import INACTIVE_STATES, held_tokens, lock_owners
from services.api.tokens import require_transition, token_for
from shared.db.models import OutboxMessage, Token, User
from shared.domain import RolloutState
from shared.echo import echo
from shared.events import new_event
from shared.logs import correlation_id
from shared.messaging.outbox import insert_outbox, outbox_message
from shared.messaging.topology import EVENTS_EXCHANGE, event_routing_key
from shared.security import Identity
from shared.token_events import token_event_data
from shared.token_states import Trigger, is_active, state_of, transition


class TokenSelection(BaseModel):
    """The body of ``POST /token/disable`` and ``/token/enable``: a serial, or its owner."""

    model_config = ConfigDict(extra="ignore")

    serial: str | None = Field(default=None, min_length=1, max_length=40)
    user: str | None = Field(default=None, min_length=1, max_length=255)
    realm: str | None = Field(default=None, pattern=REALM)


_ACTIONS = {Trigger.DISABLE: Action.DISABLE, Trigger.ENABLE: Action.ENABLE}


async def set_active(
    ctx: ApiContext, caller: Identity, data: TokenSelection, trigger: Trigger
) -> tuple[Token, bool]:
    """Disable or enable the selected token; the token, and whether it changed.

    A revoked token is inactive for good: disabling it changes nothing, enabling it is refused.
    """
    token = await _selected(ctx, caller, data)
    await require_action(ctx, caller, _ACTIONS[trigger], token.username, token.realm)
    wanted = trigger == Trigger.ENABLE
    if is_active(state_of(token.rollout_state), token.info) == wanted:
        return token, False
    require_transition("serial", token.serial, token.rollout_state, trigger)
    limit = None
    if wanted:
        rules = await enroll_rules(ctx, caller, token.username, token.realm)
        limit = rules.max_active_token_per_user
    async with ctx.db.write() as session:
        # Locked against the ca_worker's writes of the same row (its outcome, a revocation).
        current = await session.get(Token, token.serial, with_for_update=True)
        if current is None:
            raise NotFound(f"serial: no token {token.serial}")
        state = state_of(current.rollout_state)
        if is_active(state, current.info) == wanted:
            return current, False
        require_transition("serial", current.serial, current.rollout_state, trigger)
        if limit is not None and current.rollout_state not in INACTIVE_STATES:
            await _require_room(session, current, limit)
        moved = transition(state, trigger, current.info)
        current.info = moved.info
        row = _event(ctx, current, caller, moved.emit)
        await insert_outbox(session, [row])
    await ctx.relay.send([row])
    return current, True


async def _require_room(session: AsyncSession, token: Token, limit: int) -> None:
    """Forbidden when enabling *token* would give its owner more active tokens than *limit*."""
    owner = (token.username, token.realm)
    await lock_owners(session, [owner])
    active = (await held_tokens(session, [owner]))[owner][1]
    problem = active_limit_problem(limit, owner, active)
    if problem:
        raise Forbidden(problem)


def _event(ctx: ApiContext, token: Token, caller: Identity, kind: str | None) -> OutboxMessage:
    """The outbox row announcing *token*'s new flag."""
    assert kind is not None
    admin = caller.username if caller.role == "admin" else ""
    data = token_event_data(token, RolloutState(token.rollout_state), token.info, admin=admin)
    event = new_event(kind, SOURCE, token.serial, data, correlation_id.get())
    return outbox_message(EVENTS_EXCHANGE, event_routing_key(event.type), event, ctx.relay.lease)


async def _selected(ctx: ApiContext, caller: Identity, data: TokenSelection) -> Token:
    """The token *data* names: by serial, or its owner's only token (privacyIDEA's rule)."""
    if data.serial:
        return await token_for(ctx, caller, data.serial)
    if not data.user:
        raise ParameterError("serial: required (or user and realm of a user with one token)")
    username, realm = await _owner(ctx, caller, data.user, data.realm)
    async with ctx.db.read() as session:
        tokens = list(
            await session.scalars(
                select(Token).where(Token.username == username, Token.realm == realm).limit(2)
            )
        )
    if not tokens:
        raise ParameterError(f"serial: required, user {username}@{realm} has no token")
    if len(tokens) > 1:
        raise ParameterError(f"serial: required, user {username}@{realm} has several tokens")
    return tokens[0]


async def _owner(
    ctx: ApiContext, caller: Identity, user: str, realm: str | None
) -> tuple[str, str]:
    """The owner named by *user* (and *realm*); users may only name themselves."""
    username, realm = split_login(user, realm) or (user, "")
    if caller.role == "user":
        if (username, realm or caller.realm) != (caller.username, caller.realm):
            raise Forbidden("user: a user may only change their own tokens")
        return caller.username, caller.realm
    query = select(User.realm).where(User.username == username)
    if realm:
        query = query.where(User.realm == realm)
    async with ctx.db.read() as session:
        realms = set(await session.scalars(query))
    if not realms:
        raise UnknownUser(f"user: unknown user {echo(user)}")
    if len(realms) > 1:
        raise ParameterError(f"realm: required, user {echo(username)} is in several realms")
    return username, realms.pop()
