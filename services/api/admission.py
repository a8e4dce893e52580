"""What the enrollment store decides under its write lock: key replays and token limits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.api.errors import ApiError, Forbidden
from services.api.idempotency import (
    Claim,
    ClaimId,
    Prior,
    Replay,
    prior_claims,
    purge_expired,
    store_claims,
    verdict,
)
from services.api.token_counts import LimitCheck, Owner, held_tokens, lock_owners
from shared.db.models import utcnow
from shared.db.session import Executor


@dataclass(frozen=True)
class Admission:
    """What a new token is admitted under: its owner's token limit and its Idempotency-Key."""

    limit: LimitCheck | None = None
    claim: Claim | None = None


@dataclass(frozen=True)
class Candidate:
    """A token about to be stored."""

    serial: str
    owner: Owner
    admission: Admission


Verdict = Replay | ApiError | None
"""A replay of an earlier token, a refusal, or None: store it."""


def admit(
    candidates: Sequence[Candidate],
    held: dict[Owner, list[int]],
    prior: dict[ClaimId, Prior],
) -> list[Verdict]:
    """Each candidate's verdict, in order: those admitted before count against those after."""
    held = {owner: list(counts) for owner, counts in held.items()}
    prior = dict(prior)
    verdicts: list[Verdict] = []
    for candidate in candidates:
        claim, limit = candidate.admission.claim, candidate.admission.limit
        try:
            replay = verdict(prior.get(claim.id), claim) if claim else None
        except ApiError as exc:
            verdicts.append(exc)
            continue
        if replay is not None:
            verdicts.append(replay)
            continue
        counts = held.setdefault(candidate.owner, [0, 0])
        problem = limit(*counts) if limit else None
        if problem:
            verdicts.append(Forbidden(problem))
            continue
        # A new token is active (submitted, or enrolled when uploaded).
        counts[0] += 1
        counts[1] += 1
        if claim:
            prior[claim.id] = Prior(claim.fingerprint, candidate.serial)
        verdicts.append(None)
    return verdicts


async def admit_in(session: Executor, candidates: Sequence[Candidate]) -> list[Verdict]:
    """Decide *candidates* in the caller's write transaction; store the keys of those admitted.

    The owners' rows stay locked until the transaction (which stores the tokens) ends, so
    a concurrent enrollment counts these tokens; a concurrent request with the same key in
    another process fails on the key's primary key, and its retry finds this one.
    """
    limited = {c.owner for c in candidates if c.admission.limit}
    claims = [c.admission.claim for c in candidates if c.admission.claim]
    if not limited and not claims:
        return [None] * len(candidates)
    now = utcnow()
    await lock_owners(session, limited)
    held = await held_tokens(session, limited)
    if claims:
        await purge_expired(session, now)
    prior = await prior_claims(session, claims, now)
    verdicts = admit(candidates, held, prior)
    made = [
        (c.admission.claim, c.serial)
        for c, v in zip(candidates, verdicts, strict=True)
        if v is None and c.admission.claim
    ]
    await store_claims(session, made, now)
    return verdicts
