"""What a connector's answer means for the token: pure functions, no I/O."""

from __future__ import annotations

from typing import Any

from services.ca_worker.connectors.base import Issued, Pending, SignResult
from shared.db.models import Token
from shared.domain import RolloutState
from shared.jobs import SignRequest

# Token-info keys that events carry (never a secret: no key, no password).
EVENT_INFO_KEYS = (
    "certificate_serial",
    "certificate_subject",
    "certificate_not_after",
    "request_id",
    "reason",
    "revocation_reason",
)


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
    return RolloutState.FAILED, info


def event_data(
    job: SignRequest, state: RolloutState, info: dict[str, Any], certificate: str = ""
) -> dict[str, Any]:
    """What a ``token_init`` event tells subscribers."""
    data: dict[str, Any] = {
        "serial": job.serial,
        "tokentype": job.tokentype,
        "rollout_state": state.value,
        "username": job.username,
        "realm": job.realm,
        "ca": job.ca,
        "template": job.template,
    }
    data.update({key: info[key] for key in EVENT_INFO_KEYS if key in info})
    if certificate:
        data["certificate"] = certificate
    role, _, name = str(info.get("enrolled_by", "")).partition(":")
    if role == "admin" and name:
        data["admin"] = name
    return data


def token_event_data(
    token: Token,
    state: RolloutState,
    info: dict[str, Any],
    *,
    certificate: str = "",
    previous: str = "",
    admin: str = "",
) -> dict[str, Any]:
    """What a ``token_update``, ``token_revoke`` or ``token_delete`` event tells subscribers."""
    data: dict[str, Any] = {
        "serial": token.serial,
        "tokentype": token.tokentype,
        "rollout_state": state.value,
        "username": token.username,
        "realm": token.realm,
        "ca": token.ca,
        "template": token.template,
    }
    data.update({key: info[key] for key in EVENT_INFO_KEYS if key in info})
    if certificate:
        data["certificate"] = certificate
    if previous:
        data["previous_rollout_state"] = previous
    if admin:
        data["admin"] = admin
    return data


def issued_info(info: dict[str, Any], result: Issued) -> dict[str, Any]:
    """Token info after *result* was issued: its certificate details, no stale reason."""
    updated = {k: v for k, v in info.items() if k != "reason"}
    updated.update(
        certificate_serial=result.serial_number,
        certificate_subject=result.subject,
        certificate_not_after=result.not_after.isoformat(),
    )
    return updated
