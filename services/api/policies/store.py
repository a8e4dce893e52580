"""Policies in the database, and the short-lived in-process cache the decisions read.

Every enrollment needs the policies; a burst of them must not read the table per request.
Each api process keeps all policies for ``TTL_SECONDS`` and drops them at once when its own
policy routes write. Other api processes see a change within ``TTL_SECONDS``.

The cache belongs to the ``Database`` it reads (a ``WeakKeyDictionary`` keyed by that
object): the decision hooks get only the ``ApiContext``, whose ``db`` is one per app, so each
app (and each test's stack) has its own cache, dropped together with its database handle.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from services.api.policies.catalog import Scope, scope_named, scope_names
from services.api.policies.spec import PolicySpec
from shared.attestation import load_trust_store
from shared.db.models import Policy
from shared.db.session import Database
from shared.echo import echo

TTL_SECONDS = 1.0
# A path is quoted longer than other input: its end is what tells the administrator which.
PATH_ECHO_MAX = 160


def spec_of(row: Policy) -> PolicySpec:
    """The policy a row holds."""
    return PolicySpec(
        name=row.name,
        scope=scope_named(row.scope),
        action=dict(row.action),
        realm=tuple(row.realm),
        user=tuple(row.user),
        adminrealm=tuple(row.adminrealm),
        active=row.active,
        priority=row.priority,
    )


class PolicyCache:
    """All policies of one database, re-read at most once per *ttl* unless invalidated.

    It holds no reference to the database: the registry below is keyed weakly by it.
    """

    def __init__(
        self, ttl: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._clock = clock
        self._policies: tuple[PolicySpec, ...] = ()
        self._expires = float("-inf")
        # Bumped by every invalidation: a read that began before one must not be kept.
        self._generation = 0
        self._lock = asyncio.Lock()

    async def policies(self, db: Database) -> tuple[PolicySpec, ...]:
        """Every policy of *db*, active or not, at most *ttl* seconds old."""
        if self._clock() < self._expires:
            return self._policies
        async with self._lock:
            if self._clock() < self._expires:
                return self._policies
            generation = self._generation
            started = self._clock()
            async with db.read() as session:
                rows = (await session.scalars(select(Policy).order_by(Policy.name))).all()
            policies = tuple(spec_of(r) for r in rows)
            if generation == self._generation:
                self._policies, self._expires = policies, started + self._ttl
            return policies

    def invalidate(self) -> None:
        """Forget what was read: the next decision reads the table again."""
        self._generation += 1
        self._expires = float("-inf")


_caches: weakref.WeakKeyDictionary[Database, PolicyCache] = weakref.WeakKeyDictionary()


def cache_for(db: Database) -> PolicyCache:
    """The policy cache of *db*, made on first use."""
    cache = _caches.get(db)
    if cache is None:
        cache = _caches[db] = PolicyCache()
    return cache


async def current_policies(db: Database) -> tuple[PolicySpec, ...]:
    """Every policy, from the cache."""
    return await cache_for(db).policies(db)


async def list_policies(db: Database, scope: Scope | None = None) -> list[PolicySpec]:
    """Policies by name, read from the table (not the cache), optionally of one scope."""
    query = select(Policy).order_by(Policy.name)
    if scope is not None:
        query = query.where(Policy.scope.in_(scope_names(scope)))
    async with db.read() as session:
        return [spec_of(r) for r in await session.scalars(query)]


async def get_policy(db: Database, name: str) -> PolicySpec | None:
    """The policy *name*, or None."""
    async with db.read() as session:
        row = await session.get(Policy, name)
    return None if row is None else spec_of(row)


async def save_policy(db: Database, spec: PolicySpec) -> bool:
    """Create or replace the policy; True when it was created."""
    try:
        async with db.write() as session:
            row = await session.get(Policy, spec.name)
            created = row is None
            if row is None:
                row = Policy(name=spec.name)
                session.add(row)
            row.scope = spec.scope.value
            row.action = dict(spec.action)
            row.realm = list(spec.realm)
            row.user = list(spec.user)
            row.adminrealm = list(spec.adminrealm)
            row.active = spec.active
            row.priority = spec.priority
    finally:
        cache_for(db).invalidate()
    return created


async def delete_policy(db: Database, name: str) -> bool:
    """Delete the policy; False when there was none."""
    try:
        async with db.write() as session:
            row = await session.get(Policy, name)
            if row is not None:
                await session.delete(row)
    finally:
        cache_for(db).invalidate()
    return row is not None


def trust_path_problem(path: str) -> str | None:
    """Why *path* cannot serve as a trust store of attestation CAs; None when it can.

    Reads files: call it off the event loop.
    """
    where = Path(path)
    if not where.exists():
        return f"{echo(path, PATH_ECHO_MAX)} does not exist"
    if not where.is_dir() and not where.is_file():
        return f"{echo(path, PATH_ECHO_MAX)} is neither a file nor a directory"
    try:
        certificates = load_trust_store(where)
    except (OSError, ValueError) as exc:
        return f"{echo(path, PATH_ECHO_MAX)} does not hold readable PEM certificates ({exc})"
    if where.is_file() and not certificates:
        return f"{echo(path, PATH_ECHO_MAX)} holds no PEM certificate"
    return None
