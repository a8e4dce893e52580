"""privacyIDEA 3.14's answers, as recorded in cases/*.json, are what certtoken answers: the same
status codes and the same key paths with the same JSON types (certtoken may give more keys)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.contract.runner import (
    add_reference_users,
    case_files,
    certtoken,
    differences,
    load,
    run_case,
)
from tests.support.stack import Stack, prepare, running_stack, settings_for

# One system for every case (each cleans up what it makes): a stack per case took 15 s.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def contract_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """The system on the in-process broker, with the reference's users."""
    settings = settings_for(tmp_path_factory.mktemp("contract") / "data")
    await prepare(settings)
    async with running_stack(settings) as stack:
        await add_reference_users(stack)
        yield stack


# A case without ``expect`` is a request the live comparison makes (make compare-privacyidea)
# while certtoken still differs; tests.contract.record writes its expectation.
CONTRACTED = [path for path in case_files() if "expect" in load(path)]


@pytest.mark.parametrize("path", CONTRACTED, ids=lambda path: path.stem)
async def test_answer_keeps_the_contract(contract_stack: Stack, path: Path) -> None:
    case = load(path)
    answer = await run_case(certtoken(contract_stack), case)
    assert differences(case, answer) == [], f"{case['route']}: {answer.body}"
