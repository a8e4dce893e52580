"""How many tokens owners hold, and the lock under which a limit on them is decided."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sqlalchemy import and_, func, or_, select

from shared.db.models import Token, User
from shared.db.session import Executor
from shared.domain import RolloutState
from shared.token_states import DISABLED

Owner = tuple[str, str]
"""A token owner: login and realm."""

LimitCheck = Callable[[int, int], str | None]
"""Why an owner holding (total, active) tokens may not get another; None when they may."""

# Tokens in these states hold no usable certificate: they do not count as active.
INACTIVE_STATES = (RolloutState.REVOKED, RolloutState.FAILED, RolloutState.DENIED)

# A disabled token does not count as active either (privacyIDEA counts only active tokens).
_ENABLED = func.coalesce(Token.info[DISABLED].as_boolean(), False).is_not(True)


async def held_tokens(session: Executor, owners: Iterable[Owner]) -> dict[Owner, list[int]]:
    """Each owner's [total, active] token count (owners holding none included)."""
    wanted = set(owners)
    counts = {owner: [0, 0] for owner in wanted}
    if not wanted:
        return counts
    inactive = [s.value for s in INACTIVE_STATES]
    rows = await session.execute(
        select(
            Token.username,
            Token.realm,
            func.count(),
            func.count().filter(Token.rollout_state.not_in(inactive), _ENABLED),
        )
        .where(or_(*(and_(Token.username == u, Token.realm == r) for u, r in wanted)))
        .group_by(Token.username, Token.realm)
    )
    for username, realm, total, active in rows:
        counts[(username, realm)] = [total, active]
    return counts


async def lock_owners(session: Executor, owners: Iterable[Owner]) -> None:
    """Lock the owners' user rows until the transaction ends, so their counts hold.

    PostgreSQL takes row locks (in id order: no deadlock between two batches); SQLite
    ignores FOR UPDATE, its write transaction (BEGIN IMMEDIATE) holds the whole database.
    """
    wanted = set(owners)
    if not wanted:
        return
    await session.execute(
        select(User.id)
        .where(or_(*(and_(User.username == u, User.realm == r) for u, r in wanted)))
        .order_by(User.id)
        .with_for_update()
    )
