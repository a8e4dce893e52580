"""POST /certificate/decode's refusals name its own fields, once, for the web UI to show."""

from __future__ import annotations

from tests.support.stack import Stack


async def test_refusals_name_the_field_once(memory_stack: Stack) -> None:
    async with memory_stack.client(await memory_stack.admin_token()) as client:
        bad_csr = await client.post("/certificate/decode", json={"csr": "garbage"})
        bad_cert = await client.post("/certificate/decode", json={"certificate": "garbage"})
    assert bad_csr.status_code == 400 and bad_cert.status_code == 400
    assert bad_csr.json()["result"]["error"]["message"] == (
        "csr: not a PEM-encoded PKCS#10 certificate signing request"
    )
    assert bad_cert.json()["result"]["error"]["message"] == (
        "certificate: not a PEM-encoded X.509 certificate"
    )
