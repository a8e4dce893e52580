"""SIGTERM drains: the api answers what is in flight and refuses the rest; a worker acks its batch."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import pytest

from shared.messaging.topology import CA_WORKER_QUEUE
from tests.e2e.test_separate_processes import (
    _assert_signed_once,
    _enrolled,
    _issued_count,
    _submit,
    _tokens,
    _wait_enrolled,
    add_user,
    login,
    start_api,
    start_worker,
)
from tests.support.amqp import queue_counts, queued_serials
from tests.support.pki import make_csr
from tests.support.procs import Processes

pytestmark = pytest.mark.rabbitmq

T = TypeVar("T")
IN_FLIGHT = 20
JOBS = 300
# A guard against hanging, not a speed claim.
GUARD_SECONDS = 60


def until(check: Callable[[], T], what: str) -> T:
    """Ask *check* until it answers something true; that answer."""
    deadline = time.monotonic() + GUARD_SECONDS
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)
    return result


async def _inits(url: str, token: str, count: int) -> list[httpx.Response]:
    """*count* concurrent POST /token/init, each on its own connection."""
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": token}, timeout=120) as c:
        return list(
            await asyncio.gather(
                *(
                    c.post(
                        "/token/init",
                        json={
                            "type": "certificate",
                            "request": make_csr(f"drain{i}"),
                            "ca": "localca",
                            "user": "alice",
                            "realm": "corp",
                        },
                    )
                    for i in range(count)
                )
            )
        )


def _refused(url: str) -> bool:
    try:
        httpx.get(f"{url}/healthz", timeout=5)
    except httpx.ConnectError:
        return True
    except httpx.TransportError:
        # Accepted into the backlog just before the listener closed, then dropped: ask again.
        return False
    return False


def _stop_lines(processes: Processes, name: str) -> list[dict[str, Any]]:
    """The 'consumer stopped' log records of process *name*."""
    lines = (processes.logdir / f"{name}.log").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    return [r for r in records if r.get("message") == "consumer stopped"]


def _queued_but_enrolled(processes: Processes, url: str, token: str) -> str:
    """For a failure: which queued jobs belong to tokens that are enrolled already."""
    queued = queued_serials(processes.env["CERTTOKEN_AMQP_URL"], CA_WORKER_QUEUE.name)
    states = {str(t["serial"]): t["rollout_state"] for t in _tokens(url, token)}
    handled = sorted(s for s in queued if states.get(s) != "submitted")
    return f"{len(queued)} queued, {len(set(queued))} distinct; already handled: {handled}"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sigterm_api_answers_waiting_inits_and_refuses_new_connections(
    processes: Processes,
) -> None:
    url = start_api(processes, wait="30")
    token = login(url)
    add_user(url, token)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # No ca_worker yet: every init waits for its CA outcome.
        answers = pool.submit(asyncio.run, _inits(url, token, IN_FLIGHT))
        until(lambda: len(_tokens(url, token)) == IN_FLIGHT, "every init stored its token")
        processes.running["api"].send_signal(signal.SIGTERM)
        until(lambda: _refused(url), "new connections refused")
        assert not answers.done(), "the inits did not wait for their outcome"
        start_worker(processes)
        results = answers.result(timeout=GUARD_SECONDS)
    for answer in results:
        assert answer.status_code == 200, answer.text
        detail = answer.json()["detail"]
        assert detail["rollout_state"] == "enrolled", detail
        assert detail["certificate"].startswith("-----BEGIN CERTIFICATE-----")
    # It exits by itself once its requests are answered (a second SIGTERM would cut it short).
    assert processes.running.pop("api").wait(GUARD_SECONDS) == 0


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_sigterm_ca_worker_finishes_and_acks_its_batch(processes: Processes) -> None:
    url = start_api(processes, wait="0")
    token = login(url)
    add_user(url, token)
    serials = asyncio.run(_submit(url, token, JOBS))
    start_worker(processes)
    until(lambda: _enrolled(url, token) >= 20, "the worker at work")
    assert processes.stop("ca-worker") == 0
    done = _enrolled(url, token)
    assert 0 < done < JOBS, f"the stop did not land mid-queue ({done} enrolled)"
    (stopped,) = [
        r for r in _stop_lines(processes, "ca-worker") if r["queue"] == CA_WORKER_QUEUE.name
    ]
    assert stopped["in_hand"] > 0, "the worker held no batch when it stopped"
    assert stopped["unfinished"] == 0
    # What it took is done and acknowledged: the rest waits in the queue, nothing came back.
    amqp = processes.env["CERTTOKEN_AMQP_URL"]
    counts = until(
        # Its consumer gone, a quorum queue has put back whatever was left unacked.
        lambda: (c := queue_counts(amqp, CA_WORKER_QUEUE.name))["consumers"] == 0 and c,
        "the worker's consumer gone",
    )
    assert counts["ready"] == JOBS - done, _queued_but_enrolled(processes, url, token)
    start_worker(processes, "ca-worker-2")
    _wait_enrolled(url, token, serials)
    _assert_signed_once(url, token, serials)
    assert _issued_count(processes) == JOBS
