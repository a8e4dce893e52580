"""A privacyIDEA client's certificate-token flow (PI-Authorization only) works against certtoken
as it does against privacyIDEA 3.14 (``python -m tests.contract.client_flow`` runs it there)."""

from __future__ import annotations

from tests.contract.client_flow import client_flow
from tests.contract.runner import add_reference_users, certtoken
from tests.support.stack import Stack

STEPS = [
    "login",
    "rights",
    "caconnectors",
    "enroll csr",
    "enroll genkey",
    "enroll upload",
    "read token",
    "disable",
    "enable",
    "revoke",
    "delete",
]


async def test_privacyidea_client_flow(memory_stack: Stack) -> None:
    await add_reference_users(memory_stack)
    assert await client_flow(certtoken(memory_stack)) == STEPS
