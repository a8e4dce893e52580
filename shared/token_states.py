"""The one transition function of a certificate token's rollout state: pure code only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.domain import EventType, RolloutState
from shared.token_events import CA_DETAIL


class Trigger(StrEnum):
    """What happens to a token: an api request, a manager's decision or a CA's answer."""

    SUBMIT = "submit"  # the api stores a request for the CA
    UPLOAD = "upload"  # the api stores an uploaded certificate
    ISSUE = "issue"  # the CA issued a submitted request
    HOLD = "hold"  # a submitted request is held (for approval, or by the CA itself)
    FAIL = "fail"  # the CA refused a submitted request
    APPROVE = "approve"  # a manager approves a held request; the CA decides next
    DENY = "deny"  # a manager denies a held request
    ISSUE_HELD = "issue held"  # the CA issued a held request
    REFUSE_HELD = "refuse held"  # the CA refused a held request
    REVOKE = "revoke"
    DELETE = "delete"
    DISABLE = "disable"  # the token stays in its state, inactive (privacyIDEA's active=false)
    ENABLE = "enable"


State = RolloutState | None
"""A token's state; None before it is stored and once it is deleted."""

ABSENT = "absent"
"""How a missing token's state reads in messages and logs."""

DISABLED = "disabled"
"""The info key of a disabled token (True); absent while it is enabled."""


@dataclass(frozen=True)
class Facts:
    """What a trigger brings along, for the token's info."""

    reason: str = ""  # why the CA or a manager refused, or why the certificate is revoked
    detail: str = ""  # the remote CA's own words on a refusal (administrators only)
    request_id: str = ""  # the held request
    certificate_serial: str = ""
    certificate_subject: str = ""
    certificate_not_after: str = ""  # ISO 8601
    at: str = ""  # when it was revoked, ISO 8601


@dataclass(frozen=True)
class Transition:
    """Where a trigger takes a token: its new state and info, and the event announcing it."""

    state: State
    info: dict[str, Any]
    emit: EventType | None


class ImpossibleTransition(Exception):
    """The token's state does not allow the trigger."""

    def __init__(self, state: State, trigger: Trigger) -> None:
        self.state = state
        self.trigger = trigger
        super().__init__(f"a token that is {self.state_name} cannot take {trigger.value!r}")

    @property
    def state_name(self) -> str:
        """The refused token's state as messages show it."""
        return self.state.value if self.state is not None else ABSENT


_S = RolloutState
_T = Trigger
_E = EventType
# (state, trigger) -> (new state, event); a pair not listed is impossible.
_MOVES: dict[tuple[State, Trigger], tuple[State, EventType | None]] = {
    (None, _T.SUBMIT): (_S.SUBMITTED, None),  # the csr.sign job follows; its outcome is announced
    (None, _T.UPLOAD): (_S.ENROLLED, _E.TOKEN_INIT),
    (_S.SUBMITTED, _T.ISSUE): (_S.ENROLLED, _E.TOKEN_INIT),
    (_S.SUBMITTED, _T.HOLD): (_S.PENDING, _E.TOKEN_INIT),
    (_S.SUBMITTED, _T.FAIL): (_S.FAILED, _E.TOKEN_INIT),
    (_S.PENDING, _T.APPROVE): (_S.PENDING, None),
    (_S.PENDING, _T.DENY): (_S.DENIED, _E.TOKEN_UPDATE),
    (_S.PENDING, _T.ISSUE_HELD): (_S.ENROLLED, _E.TOKEN_UPDATE),
    # A held request only ever ends enrolled or denied (DESIGN 6), whoever said no.
    (_S.PENDING, _T.REFUSE_HELD): (_S.DENIED, _E.TOKEN_UPDATE),
    (_S.ENROLLED, _T.REVOKE): (_S.REVOKED, _E.TOKEN_REVOKE),
    **{(state, _T.DELETE): (None, _E.TOKEN_DELETE) for state in RolloutState},
    # A revoked token is inactive for good: neither disabled nor enabled again.
    **{(s, _T.DISABLE): (s, _E.TOKEN_DISABLE) for s in RolloutState if s != _S.REVOKED},
    **{(s, _T.ENABLE): (s, _E.TOKEN_ENABLE) for s in RolloutState if s != _S.REVOKED},
}


NO_FACTS = Facts()


def transition(
    state: State, trigger: Trigger, info: Mapping[str, Any] | None = None, facts: Facts = NO_FACTS
) -> Transition:
    """Where *trigger* takes a token in *state* with *info*; ImpossibleTransition if nowhere."""
    move = _MOVES.get((state, trigger))
    if move is None:
        raise ImpossibleTransition(state, trigger)
    new_state, emit = move
    return Transition(new_state, _info(dict(info or {}), trigger, facts), emit)


def state_of(value: str | None) -> State:
    """The state stored as *value* (None: no token)."""
    return RolloutState(value) if value is not None else None


def allows(state: State, trigger: Trigger) -> bool:
    """Whether a token in *state* may take *trigger*."""
    return (state, trigger) in _MOVES


def is_active(state: State, info: Mapping[str, Any]) -> bool:
    """Whether a token in *state* with *info* is active: neither revoked nor disabled."""
    return state is not None and state != _S.REVOKED and not info.get(DISABLED)


def _info(info: dict[str, Any], trigger: Trigger, facts: Facts) -> dict[str, Any]:
    """The token's info after *trigger*: what it records, nothing stale."""
    if trigger in (_T.ISSUE, _T.ISSUE_HELD):
        info.pop("reason", None)
        info.pop(CA_DETAIL, None)
        info.update(
            certificate_serial=facts.certificate_serial,
            certificate_subject=facts.certificate_subject,
            certificate_not_after=facts.certificate_not_after,
        )
    elif trigger == _T.HOLD:
        info["request_id"] = facts.request_id
    elif trigger in (_T.FAIL, _T.DENY, _T.REFUSE_HELD):
        if facts.reason:
            info["reason"] = facts.reason
        if facts.detail:
            info[CA_DETAIL] = facts.detail
    elif trigger == _T.REVOKE:
        info.update(revoked_at=facts.at, revocation_reason=facts.reason)
    elif trigger == _T.DISABLE:
        info[DISABLED] = True
    elif trigger == _T.ENABLE:
        info.pop(DISABLED, None)
    return info


SUBMITTED = transition(None, Trigger.SUBMIT).state
"""The state the api stores a request in, for the ca_worker's ``csr.sign`` job."""
