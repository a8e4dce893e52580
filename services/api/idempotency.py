"""``Idempotency-Key`` on ``POST /token/init``: the same key and body answer the same token."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import and_, delete, insert, or_, select

from services.api.errors import Conflict, ParameterError
from services.api.waiter import stored_detail
from shared.db.models import IdempotencyKey, utcnow
from shared.db.session import Database, Executor
from shared.security import Identity

HEADER = "Idempotency-Key"
MAX_LENGTH = 255
LIFETIME = timedelta(hours=24)
DESCRIPTION = (
    "A key of your choice (1 to 255 printable ASCII characters) that makes a retried "
    "enrollment safe: the same key with the same body within 24 hours answers the token the "
    "first request made, in its current state; the same key with another body is a 409. "
    "Keys are the caller's own: other callers' keys never match."
)
_FINGERPRINT_CONTEXT = b"certtoken idempotency-key\0"

ClaimId = tuple[str, str]
"""Whose key and the key."""


@dataclass(frozen=True)
class Claim:
    """A caller's key for one request body."""

    caller: str
    key: str
    fingerprint: str

    @property
    def id(self) -> ClaimId:
        """The stored row's primary key."""
        return (self.caller, self.key)


@dataclass(frozen=True)
class Prior:
    """What an earlier request under the same key stored."""

    fingerprint: str
    serial: str


@dataclass(frozen=True)
class Replay:
    """An earlier request under the same key made this token: answer it."""

    serial: str


def parse_key(value: str | None) -> str | None:
    """The header's key, None without the header; 400 naming it when malformed."""
    if value is None:
        return None
    if not value:
        raise ParameterError(f"{HEADER}: must not be empty")
    if len(value) > MAX_LENGTH:
        raise ParameterError(f"{HEADER}: at most {MAX_LENGTH} characters")
    if not all(" " <= c <= "~" for c in value):
        raise ParameterError(f"{HEADER}: only printable ASCII characters are allowed")
    return value


def claim_for(caller: Identity, key: str | None, body: BaseModel, secret: str) -> Claim | None:
    """*caller*'s claim on *key* for *body*; None without a key."""
    if key is None:
        return None
    whose = f"{caller.role}:{caller.username}@{caller.realm}"
    text = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    # Keyed: the body may carry a PIN, which a plain hash would let anyone with the
    # database try to guess.
    digest = hmac.new(secret.encode(), _FINGERPRINT_CONTEXT + text.encode(), hashlib.sha256)
    return Claim(whose, key, digest.hexdigest())


def verdict(prior: Prior | None, claim: Claim) -> Replay | None:
    """What an earlier use of the key means for *claim*: a replay, a 409, or nothing."""
    if prior is None:
        return None
    if not hmac.compare_digest(prior.fingerprint, claim.fingerprint):
        raise Conflict(
            f"{HEADER}: this key was used with another request body in the last "
            f"{LIFETIME.total_seconds() / 3600:.0f} hours; use a new key for a new request"
        )
    return Replay(prior.serial)


async def earlier(db: Database, claim: Claim | None) -> Replay | None:
    """The token a request already made under *claim*'s key; 409 for another body."""
    if claim is None:
        return None
    async with db.read() as session:
        prior = (await prior_claims(session, [claim], utcnow())).get(claim.id)
    return verdict(prior, claim)


async def earlier_answer(db: Database, claim: Claim | None) -> dict[str, Any] | None:
    """The answer for a request already made under *claim*'s key (its token as it is now)."""
    replay = await earlier(db, claim)
    return None if replay is None else await stored_detail(db, replay.serial)


async def prior_claims(
    session: Executor, claims: Sequence[Claim], now: datetime
) -> dict[ClaimId, Prior]:
    """The unexpired stored uses of *claims*' keys."""
    if not claims:
        return {}
    rows = await session.execute(
        select(
            IdempotencyKey.caller,
            IdempotencyKey.key,
            IdempotencyKey.fingerprint,
            IdempotencyKey.serial,
        ).where(
            or_(
                *(
                    and_(IdempotencyKey.caller == c, IdempotencyKey.key == k)
                    for c, k in {claim.id for claim in claims}
                )
            ),
            IdempotencyKey.created_at > now - LIFETIME,
        )
    )
    return {(caller, key): Prior(fp, serial) for caller, key, fp, serial in rows}


async def purge_expired(session: Executor, now: datetime) -> None:
    """Delete the keys older than their lifetime (a new use of one starts afresh)."""
    await session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at <= now - LIFETIME))


async def store_claims(session: Executor, made: Sequence[tuple[Claim, str]], now: datetime) -> None:
    """Record each claim with the serial it made; the primary key refuses a concurrent twin."""
    if made:
        rows = [
            {
                "caller": claim.caller,
                "key": claim.key,
                "fingerprint": claim.fingerprint,
                "serial": serial,
                "created_at": now,
            }
            for claim, serial in made
        ]
        await session.execute(insert(IdempotencyKey), rows)
