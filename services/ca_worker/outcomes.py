"""What a connector's answer means for the token: pure functions, no I/O."""

from __future__ import annotations

from services.ca_worker.connectors.base import Issued, Pending, SignResult
from shared.jobs import SignRequest
from shared.token_states import Facts, State, Transition, Trigger, transition


def facts_of(result: SignResult) -> Facts:
    """What the token's info records of a connector's answer."""
    if isinstance(result, Issued):
        return Facts(
            certificate_serial=result.serial_number,
            certificate_subject=result.subject,
            certificate_not_after=result.not_after.isoformat(),
        )
    if isinstance(result, Pending):
        return Facts(request_id=result.request_id)
    return Facts(reason=result.reason, detail=result.detail)


def sign_trigger(result: SignResult) -> Trigger:
    """What a ``csr.sign`` answer does to a submitted token; a refusal fails it."""
    if isinstance(result, Issued):
        return Trigger.ISSUE
    if isinstance(result, Pending):
        return Trigger.HOLD
    return Trigger.FAIL


def outcome(state: State, job: SignRequest, result: SignResult) -> Transition:
    """Where a ``csr.sign`` answer takes the job's token in *state*; else ImpossibleTransition."""
    return transition(state, sign_trigger(result), job.info, facts_of(result))
