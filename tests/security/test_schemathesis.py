"""schemathesis against the running api's ``/openapi.json``, as admin and as a user: no 5xx.

Bounded for the suite: a few examples per operation and mode, no shrinking, a fixed seed
(``derandomize``) so that a run is reproducible. Negative cases are generated only where the
schema leaves something to violate (a body, a query, a constrained path parameter).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode

from tests.support.stack import Stack, prepare, running_stack, settings_for

PASSWORD = "alice-password-1"
ADMIN_EXAMPLES = 6
USER_EXAMPLES = 3
FUZZ_SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@dataclass
class Findings:
    """What a run saw: answers by status, and every server error with its case."""

    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    """The system on each database and the in-process broker, with a short init wait."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else ""
    settings_ = settings_for(tmp_path / "data", init_wait_seconds=0.5, database_url=url)
    await prepare(settings_)
    async with running_stack(settings_) as running:
        yield running


def negatable(document: dict[str, Any], method: str, path: str) -> bool:
    """Whether the operation has anything negative data can violate."""
    operation = document["paths"][path][method.lower()]
    if "requestBody" in operation:
        return True
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "query":
            return True
        schema = {k: v for k, v in parameter.get("schema", {}).items() if k != "title"}
        if schema != {"type": "string"}:
            return True
    return False


def fuzz(url: str, token: str, examples: int) -> Findings:
    """Call every operation with generated cases; blocking, so run it off the event loop."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    document = httpx.get(f"{url}/openapi.json").json()
    headers = {"Authorization": token}
    found = Findings()
    session = requests.Session()

    def call(case: Case) -> None:
        try:
            answer = case.call(base_url=url, session=session, headers=headers)
        except requests.RequestException as exc:
            found.errors.append(f"{case.operation.label}: no answer ({exc!r})")
            return
        found.statuses[answer.status_code] = found.statuses.get(answer.status_code, 0) + 1
        if answer.status_code >= 500:
            found.errors.append(
                f"{case.operation.label} {answer.status_code}: path={case.path_parameters} "
                f"query={case.query} body={str(case.body)[:200]} -> {answer.text[:200]}"
            )

    for result in schema.get_all_operations():
        operation = result.ok()
        modes = [GenerationMode.POSITIVE]
        if negatable(document, operation.method, operation.path):
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            strategy = operation.as_strategy(generation_mode=mode)

            @settings(FUZZ_SETTINGS, max_examples=examples)
            @given(strategy)
            def run(case: Case) -> None:
                call(case)

            try:
                run()
            except Unsatisfiable:
                continue
    return found


async def test_no_server_errors_as_admin_and_as_user(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    admin_token = await stack.admin_token()
    async with stack.client(admin_token) as admin:
        made = await admin.post(
            "/user/", json={"user": "alice", "realm": "corp", "password": PASSWORD}
        )
        assert made.status_code == 200, made.text
    user_token = await stack.login("alice@corp", PASSWORD)
    for token, examples in ((admin_token, ADMIN_EXAMPLES), (user_token, USER_EXAMPLES)):
        found = await asyncio.to_thread(fuzz, stack.url, token, examples)
        assert not found.errors, "\n".join(found.errors)
        # The run did reach the routes: some calls succeeded and some were refused.
        assert found.statuses.get(200, 0) > 0 and found.statuses.get(400, 0) > 0, found
    async with stack.client(admin_token) as admin:
        assert (await admin.get("/token/")).status_code == 200
    # Audit rows are written after the answers: a row the database refused would be logged.
    await asyncio.sleep(0.5)
    errors = [r.getMessage()[:300] for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors
