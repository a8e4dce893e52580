"""The one wait for a token's outcome: its event, or the token as stored when the event is missed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest
from sqlalchemy import delete, insert, update

from services.api.waiter import FINAL_FOR_INIT_WAIT, OutcomeWaiter, await_outcome, retired
from shared.db.migrate import upgrade
from shared.db.models import Token, utcnow
from shared.db.session import Database
from shared.domain import EventType, RolloutState
from shared.events import encode, new_event
from shared.messaging.base import Message
from tests.support.stack import settings_for

if TYPE_CHECKING:
    from services.api.context import ApiContext

SERIAL = "CRTWAIT001"
# Far longer than the test may take: an answer before it can only come from the re-check.
LONG_WAIT = 120.0


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated SQLite database holding one submitted token."""
    settings = settings_for(tmp_path / "data")
    settings.data_dir.mkdir(parents=True)
    await upgrade(settings.resolved_database_url)
    database = Database(settings.resolved_database_url)
    now = utcnow()
    async with database.write() as session:
        await session.execute(
            insert(Token).values(
                serial=SERIAL,
                username="alice",
                realm="corp",
                rollout_state=RolloutState.SUBMITTED.value,
                info={"description": "waiting"},
                created_at=now,
                updated_at=now,
            )
        )
    try:
        yield database
    finally:
        await database.dispose()


def context(db: Database, wait: float) -> ApiContext:
    """What the wait reads of the api's context: the database and the bound."""
    settings = SimpleNamespace(init_wait_seconds=wait)
    return cast("ApiContext", SimpleNamespace(db=db, settings=settings))


async def set_state(db: Database, state: RolloutState, **values: Any) -> None:
    async with db.write() as session:
        await session.execute(
            update(Token).where(Token.serial == SERIAL).values(rollout_state=state.value, **values)
        )


def event(kind: EventType, **data: Any) -> Message:
    body = encode(new_event(kind.value, "test", SERIAL, {"serial": SERIAL, **data}))
    return Message(body.encode(), "m-1", kind.value)


async def test_a_missed_event_does_not_hold_the_answer_for_the_whole_bound(db: Database) -> None:
    waiter = OutcomeWaiter()
    expected = waiter.expect(SERIAL)
    await set_state(db, RolloutState.ENROLLED, certificate="PEM")  # its event never comes
    async with asyncio.timeout(LONG_WAIT / 4):
        outcome = await await_outcome(context(db, LONG_WAIT), expected)
    assert outcome.ended
    assert outcome.detail == {"serial": SERIAL, "rollout_state": "enrolled", "certificate": "PEM"}


async def test_an_event_answers_with_what_it_tells(db: Database) -> None:
    waiter = OutcomeWaiter()
    expected = waiter.expect(SERIAL, FINAL_FOR_INIT_WAIT)
    await waiter.on_event(event(EventType.TOKEN_UPDATE, rollout_state="submitted"))
    assert not expected.future.done()  # not a state that ends the wait
    await waiter.on_event(event(EventType.TOKEN_INIT, rollout_state="failed", reason="no"))
    outcome = await await_outcome(context(db, LONG_WAIT), expected)
    assert outcome == type(outcome)(
        {"serial": SERIAL, "rollout_state": "failed", "reason": "no"}, ended=True
    )
    waiter.discard(expected)
    assert waiter.waiting == 0


async def test_the_bound_ends_with_the_token_as_stored(db: Database) -> None:
    waiter = OutcomeWaiter()
    expected = waiter.expect(SERIAL)
    outcome = await await_outcome(context(db, 0.05), expected)
    assert not outcome.ended
    assert outcome.detail == {"serial": SERIAL, "rollout_state": "submitted"}


async def test_a_retirement_ends_on_the_stored_state_too(db: Database) -> None:
    waiter = OutcomeWaiter()
    revoking = waiter.expect(SERIAL, retired(EventType.TOKEN_REVOKE))
    deleting = waiter.expect(SERIAL, retired(EventType.TOKEN_DELETE))
    await set_state(db, RolloutState.REVOKED, info={"revocation_reason": "superseded"})
    async with asyncio.timeout(LONG_WAIT / 4):
        revoked = await await_outcome(context(db, LONG_WAIT), revoking)
    assert revoked.ended
    assert revoked.detail == {
        "serial": SERIAL,
        "rollout_state": "revoked",
        "revocation_reason": "superseded",
    }
    async with db.write() as session:
        await session.execute(delete(Token).where(Token.serial == SERIAL))
    async with asyncio.timeout(LONG_WAIT / 4):
        deleted = await await_outcome(context(db, LONG_WAIT), deleting)
    assert deleted.ended
    assert deleted.detail == {"serial": SERIAL, "rollout_state": "deleted"}
