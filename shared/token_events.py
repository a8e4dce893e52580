"""The data of ``token_*`` events, as the api and the ca_worker both publish them."""

from __future__ import annotations

from typing import Any, Protocol

from shared.domain import RolloutState

# The remote CA's own words on a refusal: token info for administrators and the audit log;
# never in an event, never shown to a user (they get certtoken's reason).
CA_DETAIL = "ca_detail"
# Token-info keys that events carry (never a secret: no key, no password).
EVENT_INFO_KEYS = (
    "certificate_serial",
    "certificate_subject",
    "certificate_not_after",
    "request_id",
    "reason",
    "revocation_reason",
)


class TokenIdentity(Protocol):
    """What names a token: a stored Token or the SignRequest that creates one."""

    @property
    def serial(self) -> str: ...
    @property
    def tokentype(self) -> str: ...
    @property
    def username(self) -> str: ...
    @property
    def realm(self) -> str: ...
    @property
    def ca(self) -> str: ...
    @property
    def template(self) -> str: ...


def init_event_data(
    token: TokenIdentity, state: RolloutState, info: dict[str, Any], certificate: str = ""
) -> dict[str, Any]:
    """What a ``token_init`` event tells subscribers; ``admin`` when an admin enrolled."""
    role, _, name = str(info.get("enrolled_by", "")).partition(":")
    admin = name if role == "admin" else ""
    return token_event_data(token, state, info, certificate=certificate, admin=admin)


def token_event_data(
    token: TokenIdentity,
    state: RolloutState,
    info: dict[str, Any],
    *,
    certificate: str = "",
    previous: str = "",
    admin: str = "",
) -> dict[str, Any]:
    """What a ``token_*`` event tells subscribers about *token* in *state*."""
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
