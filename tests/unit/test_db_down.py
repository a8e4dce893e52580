"""A database that is restarting is an outage (retried, 503), not the message's or caller's fault."""

from __future__ import annotations

import errno

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError

from shared.db.faults import DATABASE_DOWN, storage_outage
from shared.messaging.base import Message
from shared.messaging.routing import failure_route
from shared.messaging.topology import WORK_QUEUES


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
        ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
        asyncpg.exceptions.AdminShutdownError(
            "terminating connection due to administrator command"
        ),
        asyncpg.exceptions.CannotConnectNowError("the database system is shutting down"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle"),
        DBAPIError("SELECT 1", None, OSError(errno.ECONNREFUSED, "refused")),
        ConnectionError("unexpected connection_lost() call"),
        BrokenPipeError(errno.EPIPE, "Broken pipe"),
    ],
)
def test_a_database_going_away_is_an_outage(error: BaseException) -> None:
    assert storage_outage(error) == DATABASE_DOWN


def test_a_job_meeting_a_restarting_database_is_never_parked() -> None:
    spec = WORK_QUEUES[0]
    message = Message(body=b"{}", message_id="m", type="csr.sign", attempt=99)
    route = failure_route(
        spec,
        message,
        ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
        exchange="",
        retry_delays_ms=[200, 500],
        max_attempts=6,
    )
    assert not route.parked
    assert route.delay_ms == 500


def test_other_connection_errors_are_not_database_outages() -> None:
    assert storage_outage(asyncpg.exceptions.UniqueViolationError("duplicate key")) is None
    assert storage_outage(OSError(errno.EHOSTUNREACH, "No route to host")) is None
