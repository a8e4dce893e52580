"""User logins: who a login names, and the lockout after repeated wrong passwords.

A user's wrong passwords are counted in the database (so the count holds across api
processes and restarts). Each attempt reserves one of ``max_failures`` tries before its
password is checked, so parallel guesses cannot exceed the budget; a success clears the
count. When the tries are used up the login is locked for ``window`` seconds, during which
even the right password is refused; then the count starts again from zero. Administrators
are counted the same way, under the realm key :data:`ADMIN_REALM`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from shared.db.models import LoginFailure, utcnow
from shared.db.session import Database

# The realm key of administrators' counts: user realms start with a letter or digit
# (services.api.schemas.REALM), so no user's count can ever share an administrator's row.
ADMIN_REALM = "#admin"


def split_login(username: str, realm: str | None) -> tuple[str, str] | None:
    """``(user, realm)`` from ``user`` + ``realm`` or ``user@realm``; None when no realm."""
    if realm:
        suffix = f"@{realm}"
        name = username[: -len(suffix)] if username.endswith(suffix) else username
        return (name, realm) if name else None
    name, at, given = username.rpartition("@")
    if not at or not name or not given:
        return None
    return name, given


@dataclass(frozen=True)
class Tries:
    """A user's failure count and lock as stored."""

    failures: int
    locked_until: datetime | None


def reserve(
    tries: Tries, max_failures: int, window: timedelta, now: datetime
) -> tuple[Tries, bool]:
    """The count after one more attempt starts, and whether that attempt may go on."""
    if tries.locked_until is not None and tries.locked_until > now:
        return tries, False
    failures = 0 if tries.locked_until is not None else tries.failures
    if failures >= max_failures:
        return Tries(0, now + window), False
    return Tries(failures + 1, None), True


def after_failure(tries: Tries, max_failures: int, window: timedelta, now: datetime) -> Tries:
    """The count after an attempt failed: locked once the tries are used up."""
    if tries.locked_until is None and tries.failures >= max_failures:
        return Tries(0, now + window)
    return tries


class LoginThrottle:
    """The lockout counters of the internal user store, in the ``login_failure`` table."""

    def __init__(self, db: Database, max_failures: int, window_seconds: float) -> None:
        self._db = db
        self._max = max_failures
        self._window = timedelta(seconds=window_seconds)

    async def begin(self, realm: str, username: str) -> bool:
        """Reserve one try for this user; False while the login is locked."""
        for attempt in range(2):
            try:
                async with self._db.write() as session:
                    row = await session.get(LoginFailure, (realm, username), with_for_update=True)
                    if row is None:
                        row = LoginFailure(realm=realm, username=username, failures=0)
                        session.add(row)
                    tries, allowed = reserve(
                        Tries(row.failures, row.locked_until), self._max, self._window, utcnow()
                    )
                    row.failures, row.locked_until = tries.failures, tries.locked_until
                return allowed
            except IntegrityError:
                # Another process inserted the row first; the retry finds it.
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def failed(self, realm: str, username: str) -> None:
        """Count a wrong password; locks the login when the tries are used up."""
        async with self._db.write() as session:
            row = await session.get(LoginFailure, (realm, username), with_for_update=True)
            if row is None:
                return
            tries = after_failure(
                Tries(row.failures, row.locked_until), self._max, self._window, utcnow()
            )
            row.failures, row.locked_until = tries.failures, tries.locked_until

    async def succeeded(self, realm: str, username: str) -> None:
        """The right password: forget the failures."""
        async with self._db.write() as session:
            await session.execute(
                delete(LoginFailure).where(
                    LoginFailure.realm == realm, LoginFailure.username == username
                )
            )
