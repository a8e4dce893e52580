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
    role, _, name = str(info.get("enrolled_by", "")).partition(":")
    identity = (job.serial, job.tokentype, job.username, job.realm, job.ca, job.template)
    return _token_fields(
        identity, state, info, certificate=certificate, admin=name if role == "admin" else ""
    )


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
    identity = (
        token.serial,
        token.tokentype,
        token.username,
        token.realm,
        token.ca,
        token.template,
    )
    return _token_fields(
        identity, state, info, certificate=certificate, previous=previous, admin=admin
    )


def _token_fields(
    identity: tuple[str, str, str, str, str, str],
    state: RolloutState,
    info: dict[str, Any],
    *,
    certificate: str = "",
    previous: str = "",
    admin: str = "",
) -> dict[str, Any]:
    serial, tokentype, username, realm, ca, template = identity
    data: dict[str, Any] = {
        "serial": serial,
        "tokentype": tokentype,
        "rollout_state": state.value,
        "username": username,
        "realm": realm,
        "ca": ca,
        "template": template,
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
