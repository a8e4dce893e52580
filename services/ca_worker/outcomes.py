"""What a connector's answer means for the token: pure functions, no I/O."""

from __future__ import annotations

from typing import Any

from services.ca_worker.connectors.base import Issued, Pending, SignResult
from shared.domain import RolloutState
from shared.jobs import SignRequest
from shared.token_events import CA_DETAIL


def outcome(job: SignRequest, result: SignResult) -> tuple[RolloutState, dict[str, Any]]:
    """The new state and token info for a connector's answer; a refusal fails the token."""
    info = dict(job.info)
    if isinstance(result, Issued):
        info.update(
            certificate_serial=result.serial_number,
            certificate_subject=result.subject,
            certificate_not_after=result.not_after.isoformat(),
        )
        return RolloutState.ENROLLED, info
    if isinstance(result, Pending):
        info["request_id"] = result.request_id
        return RolloutState.PENDING, info
    info["reason"] = result.reason
    if result.detail:
        info[CA_DETAIL] = result.detail
    return RolloutState.FAILED, info


def issued_info(info: dict[str, Any], result: Issued) -> dict[str, Any]:
    """Token info after *result* was issued: its certificate details, no stale reason."""
    updated = {k: v for k, v in info.items() if k not in ("reason", CA_DETAIL)}
    updated.update(
        certificate_serial=result.serial_number,
        certificate_subject=result.subject,
        certificate_not_after=result.not_after.isoformat(),
    )
    return updated
