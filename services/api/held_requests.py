"""Who holds a pending token's request: certtoken (awaiting approval) or the CA itself."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import CARequest, Token
from shared.domain import RolloutState

CERTTOKEN = "certtoken"
CA = "ca"


async def held_by(session: AsyncSession, tokens: Sequence[Token]) -> dict[str, str]:
    """Serial -> ``certtoken`` or ``ca`` for each pending token among *tokens* with a request."""
    serials = [t.serial for t in tokens if t.rollout_state == RolloutState.PENDING]
    if not serials:
        return {}
    rows = await session.execute(
        select(CARequest.token_serial, CARequest.kind, CARequest.decision).where(
            CARequest.token_serial.in_(serials)
        )
    )
    # Once approved, the request is on its way to the CA: the CA decides now.
    return {
        serial: CERTTOKEN if kind == "approval" and decision is None else CA
        for serial, kind, decision in rows
    }
