"""Two apis, two ca_workers and two notifiers as processes on PostgreSQL and RabbitMQ."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.deployment import CA, Deployment, deployed

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres, pytest.mark.smtp]

ENROLLMENTS = 200
HELD = 6


@pytest.fixture
def deployment(tmp_path: Path, postgres_url: str) -> Iterator[Deployment]:
    """2 x 3 services; an api answers each enrollment's outcome within its wait."""
    with deployed(tmp_path, postgres_url, api_env={"CERTTOKEN_INIT_WAIT_SECONDS": "30"}) as done:
        yield done


async def token_state(client: httpx.AsyncClient, serial: str) -> str:
    """certtoken's rollout state of *serial*, as an api lists it."""
    answer = await client.get("/token/", params={"serial": serial})
    assert answer.status_code == 200, answer.text
    tokens = answer.json()["result"]["value"]["tokens"]
    assert len(tokens) == 1, answer.text
    state: str = tokens[0]["certtoken_state"]
    return state


async def test_every_enrollment_gets_its_outcome_whichever_process(
    deployment: Deployment,
) -> None:
    done = await deployment.enroll(ENROLLMENTS)
    assert not done.refused, done.refused
    assert len(set(done.accepted)) == ENROLLMENTS
    # Each answer carried its own outcome, whichever api took it and whichever worker signed.
    assert done.states == {"enrolled": ENROLLMENTS}
    assert set(done.by_api) == set(deployment.apis)
    assert min(done.by_api.values()) >= ENROLLMENTS // 3
    signed = await deployment.signed_by()
    assert all(n > 0 for n in signed.values()), signed

    first, second = deployment.apis
    async with deployment.client(first) as one, deployment.client(second) as other:
        template = await one.post(
            f"/caconnector/{CA}/templates/held", json={"approval": "required"}
        )
        assert template.status_code == 200, template.text
        held = await deployment.enroll(HELD, template="held", apis=[first])
        assert held.states == {"pending": HELD}, held
        listed = await other.get(f"/ca/{CA}/requests", params={"status": "pending"})
        assert listed.status_code == 200, listed.text
        requests = listed.json()["result"]["value"]["requests"]
        assert {r["serial"] for r in requests} == set(held.accepted)
        for request in requests:
            approved = await other.post(f"/ca/{CA}/requests/{request['request_id']}/approve")
            assert approved.status_code == 200, approved.text
            assert approved.json()["detail"]["rollout_state"] == "enrolled", approved.text
        for serial in held.accepted:
            assert await token_state(one, serial) == "enrolled"

        revoked = done.accepted[:5]
        for serial in revoked:
            answer = await other.post(
                "/token/revoke", json={"serial": serial, "reason": "keyCompromise"}
            )
            assert answer.status_code == 200, answer.text
        for serial in revoked:
            assert await token_state(one, serial) == "revoked"

    done.accepted += held.accepted
    verdict = await deployment.verdict("multi-instance", done, await deployment.drain(within=60))
    assert verdict.lost == 0, verdict
    assert verdict.unanswered == 0, verdict
    assert verdict.duplicate_certs == 0, verdict
    assert verdict.duplicate_mails == 0, verdict
    assert verdict.missing_mails == 0, verdict
    assert verdict.states == {"enrolled": ENROLLMENTS + HELD - 5, "revoked": 5}, verdict
