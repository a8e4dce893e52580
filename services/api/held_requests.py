"""Who holds a pending token's request: certtoken (awaiting approval) or the CA itself."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import CARequest, Token
from shared.domain import RolloutState
from shared.pki import CSRError, csr_summary, parse_csr

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


def request_view(row: CARequest, token_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """A held request with its decoded CSR and what its token says of the key's attestation."""
    info = token_info or {}
    try:
        csr: dict[str, Any] = dict(csr_summary(parse_csr(row.csr)))
    except CSRError as exc:
        csr = {"error": str(exc)}
    return {
        "request_id": row.id,
        "ca": row.ca,
        "serial": row.token_serial,
        "template": row.template,
        "status": row.status,
        "held_by": "certtoken" if row.kind == "approval" else "ca",
        "username": row.username,
        "realm": row.realm,
        "requester": row.requester,
        "time": row.created_at.isoformat(),
        "decision": row.decision,
        "decided_by": row.decided_by,
        "reason": row.reason,
        "csr": csr,
        "attestation_verified": bool(info.get("attestation_verified", False)),
        "attestation_subject": str(info.get("attestation_subject", "")),
        "attestation_issuer": str(info.get("attestation_issuer", "")),
    }
