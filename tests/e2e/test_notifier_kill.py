"""The notifier as a process, killed (SIGKILL) with mails in flight: none lost, none twice."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import httpx
import pytest

from shared.messaging.amqp import AmqpBroker
from shared.notification.planning import message_id
from tests.support.notify import publish, token_event
from tests.support.procs import Processes, free_port
from tests.support.smtp import running_sink

pytestmark = [pytest.mark.rabbitmq, pytest.mark.smtp]

ADMIN = {"username": "admin", "password": "admin-password-1"}
FIRST, REST = 10, 30


def start_notifier(processes: Processes) -> None:
    port = free_port()
    env = {
        "CERTTOKEN_HEALTH_PORT": str(port),
        # A short lease, so that the restarted notifier takes over the dead one's claims soon.
        "CERTTOKEN_NOTIFIER_CLAIM_MARGIN_SECONDS": "1",
    }
    processes.start("notifier", "notifier", extra_env=env)
    processes.wait_http("notifier", f"http://127.0.0.1:{port}/readyz")


async def wait_until(what: str, check: Callable[[], Awaitable[bool]], within: float = 60) -> None:
    """Wait until *check* holds; fail naming *what* after *within* seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.05)


async def count_sent(client: httpx.AsyncClient) -> int:
    """Delivery records with status sent."""
    answer = await client.get("/event/deliveries", params={"status": "sent", "pagesize": 1})
    assert answer.status_code == 200, answer.text
    count: int = answer.json()["result"]["value"]["count"]
    return count


async def test_sigkill_mid_batch_loses_and_duplicates_nothing(processes: Processes) -> None:
    api_port = free_port()
    processes.start("api", "api", "--port", str(api_port))
    url = f"http://127.0.0.1:{api_port}"
    processes.wait_http("api", f"{url}/readyz")
    async with httpx.AsyncClient(base_url=url) as anonymous:
        token = (await anonymous.post("/auth", json=ADMIN)).json()["result"]["value"]["token"]
    broker = AmqpBroker(processes.env["CERTTOKEN_AMQP_URL"])
    await broker.start()
    with running_sink() as sink:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": token}) as api:

            async def sent_at_least(count: int) -> bool:
                return await count_sent(api) >= count

            for path, body in [
                ("/user/", {"user": "alice", "realm": "corp", "email": "alice@example.org"}),
                (
                    "/smtpserver/mail",
                    {
                        "server": sink.host,
                        "port": sink.port,
                        "sender": "ct@example.org",
                        "timeout": 3,
                    },
                ),
                (
                    "/event",
                    {
                        "name": "owner",
                        "event": "token_init",
                        "handlermodule": "UserNotification",
                        "action": "sendmail",
                        "conditions": {"rollout_state": "pending"},
                        "options": {"emailconfig": "mail", "To": "tokenowner"},
                    },
                ),
            ]:
                answer = await api.post(path, json=body)
                assert answer.status_code == 200, answer.text
            start_notifier(processes)
            events = [token_event(serial=f"CRT{i:08X}") for i in range(FIRST + REST)]
            for event in events[:FIRST]:
                await publish(broker, event)
            await wait_until("first mails recorded", lambda: sent_at_least(FIRST))
            assert sink.count() == FIRST

            # From now on the server holds every mail at DATA: in flight, not accepted.
            sink.hold()
            for event in events[FIRST:]:
                await publish(broker, event)
            await wait_until("mails in flight", lambda: _now(sink.held() >= 3))
            assert processes.stop("notifier", signal.SIGKILL) == -signal.SIGKILL
            # The dead client's connections close; the held mails were never accepted.
            await wait_until("connections closed", lambda: _now(sink.open_connections() == 0))
            sink.release()
            assert sink.count() == FIRST

            start_notifier(processes)
            await wait_until("all mails recorded", lambda: sent_at_least(FIRST + REST))
            assert processes.stop("notifier") == 0
    await broker.close()

    received = Counter(str(m.message["Message-ID"]) for m in sink.received)
    expected = {message_id(e.id, 1, "alice@example.org") for e in events}
    assert set(received) == expected
    assert set(received.values()) == {1}
    assert sink.count() == FIRST + REST


async def _now(value: bool) -> bool:
    return value
