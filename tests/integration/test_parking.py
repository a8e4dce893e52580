"""A job that can never be handled is parked, listed and replayed by an operator."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from shared.messaging.base import Message
from shared.messaging.topology import CA_WORKER_QUEUE, CSR_SIGN, JOBS_EXCHANGE
from tests.support.procs import service_env
from tests.support.stack import prepare, running_stack, settings_for

pytestmark = pytest.mark.rabbitmq


async def _wait_depth(stack_broker: object, queue: str, depth: int) -> None:
    for _ in range(100):
        if await stack_broker.queue_depth(queue) == depth:  # type: ignore[attr-defined]
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{queue} never reached depth {depth}")


async def test_poison_job_is_parked_listed_and_replayed(tmp_path: Path, amqp_url: str) -> None:
    settings = settings_for(tmp_path / "data", amqp_url=amqp_url)
    await prepare(settings)
    env = service_env(tmp_path / "data", amqp_url, settings.resolved_database_url)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    async with running_stack(settings) as stack:
        message_id = str(uuid.uuid4())
        await stack.broker.publish(
            JOBS_EXCHANGE, CSR_SIGN, Message(b"{not a cloudevent", message_id, "csr.sign")
        )
        await _wait_depth(stack.broker, CA_WORKER_QUEUE.parking, 1)

        listed = await asyncio.to_thread(cli, "queue", "parked", "ca_worker")
        assert listed.returncode == 0, listed.stderr
        assert message_id in listed.stdout
        assert "malformed csr.sign job" in listed.stdout
        assert await stack.broker.queue_depth(CA_WORKER_QUEUE.parking) == 1  # still parked
        as_json = await asyncio.to_thread(cli, "queue", "parked", "ca_worker", "--json")
        assert as_json.returncode == 0, as_json.stderr
        doc = json.loads(as_json.stdout)
        assert doc["queue"] == CA_WORKER_QUEUE.parking and doc["count"] == 1
        [parked] = doc["parked"]
        assert parked["message_id"] == message_id and parked["type"] == "csr.sign"
        assert "malformed csr.sign job" in parked["error"]

        replayed = await asyncio.to_thread(cli, "queue", "replay", "ca_worker")
        assert replayed.returncode == 0, replayed.stderr
        assert "1 message(s) replayed" in replayed.stdout
        # Still poison: the worker parks it again rather than dropping or looping on it.
        await _wait_depth(stack.broker, CA_WORKER_QUEUE.parking, 1)
        assert await stack.broker.queue_depth(CA_WORKER_QUEUE.name) == 0
