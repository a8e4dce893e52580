"""A CA manager's decision on a held request, and a revocation: the checks and the job.

Shared by the api's routes and the operator CLI, so both refuse the same things and hand the
ca_worker the same job through the outbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from sqlalchemy import select, update

from services.api.errors import Conflict, NotFound
from services.api.tokens import require_transition
from shared.ca_jobs import Decision, Retirement
from shared.db.models import Base, CARequest, OutboxMessage, Token, utcnow
from shared.db.session import Database
from shared.echo import echo
from shared.messaging.outbox import insert_outbox
from shared.messaging.topology import CA_APPROVE, CA_DENY
from shared.token_states import Trigger

Verdict = Literal["approve", "deny"]


async def open_request(db: Database, ca: str, request_id: str, decision: Verdict) -> CARequest:
    """The held request *request_id* of *ca*: 404 when there is none, 409 unless still open."""
    async with db.read() as session:
        held = await session.get(CARequest, request_id)
        state: str | None = None
        if held is not None:
            state = await session.scalar(
                select(Token.rollout_state).where(Token.serial == held.token_serial)
            )
    if held is None or held.ca != ca:
        raise NotFound(f"request: CA {echo(ca)} has no request {echo(request_id)}")
    check_open(held)
    trigger = Trigger.APPROVE if decision == "approve" else Trigger.DENY
    require_transition("request", held.token_serial, state, trigger)
    return held


def decision_job(
    held: CARequest, decision: Verdict, decided_by: str, reason: str
) -> tuple[str, dict[str, Any]]:
    """The job kind and data that tell the ca_worker to issue or deny *held*."""
    kind = CA_APPROVE if decision == "approve" else CA_DENY
    return kind, Decision(held.id, held.ca, decided_by, reason).to_data()


async def record_decision(
    db: Database,
    held: CARequest,
    decision: Verdict,
    decided_by: str,
    row: OutboxMessage,
    also: Sequence[Base] = (),
) -> None:
    """Record the decision with its job *row* (and *also*) in one transaction; the first wins."""
    async with db.write() as session:
        # The first decision wins; a second one (even a concurrent one) is a conflict.
        changed = await session.execute(
            update(CARequest)
            .where(
                CARequest.id == held.id,
                CARequest.status == "pending",
                CARequest.decision.is_(None),
            )
            .values(decision=decision, decided_by=decided_by, decided_at=utcnow())
        )
        if not changed.rowcount:  # type: ignore[attr-defined]
            current = await session.get(CARequest, held.id)
            assert current is not None
            check_open(current)
        await insert_outbox(session, [row])
        session.add_all(also)


def check_open(held: CARequest) -> None:
    """409 unless a manager may still decide on *held*."""
    if held.decision is not None:
        raise Conflict(
            f"request: {held.id!r} was already decided ({held.decision} by {held.decided_by})"
        )
    if held.status != "pending":
        raise Conflict(f"request: {held.id!r} is {held.status}, not pending")
    if held.kind != "approval":
        raise Conflict(f"request: {held.id!r} is held by the CA itself; decide it there")


def revocation(token: Token, reason: str, revoked_by: str) -> Retirement:
    """The ``ca.revoke`` job for *token*; an error naming its state unless it may be revoked."""
    require_transition("serial", token.serial, token.rollout_state, Trigger.REVOKE)
    return Retirement(token.serial, reason, revoked_by)
