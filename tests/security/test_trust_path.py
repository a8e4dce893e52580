"""A policy's trust path reads regular files only, within a bound: a FIFO never blocks it."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from services.api.policies.catalog import TRUSTED_CA_PATH
from shared.attestation import MAX_TRUST_FILE_BYTES, load_trust_store
from tests.support.stack import prepare, running_stack, settings_for

FIXTURES = Path(__file__).parents[1] / "fixtures" / "attestation"
# The api answers at once; a read blocking on a FIFO would never answer.
ANSWER_SECONDS = 10


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An administrator's client of a running system."""
    settings = settings_for(tmp_path / "data")
    await prepare(settings)
    async with running_stack(settings) as stack, stack.client(await stack.admin_token()) as client:
        yield client


async def policy_answer(admin: httpx.AsyncClient, path: Path) -> httpx.Response:
    """Ask for a user policy trusting *path*; fails the test if no answer comes in time."""
    body = {"scope": "user", "action": f"{TRUSTED_CA_PATH}={path}"}
    return await asyncio.wait_for(admin.post("/policy/trust", json=body), ANSWER_SECONDS)


@contextlib.contextmanager
def fifo(path: Path) -> Iterator[Path]:
    """A FIFO at *path*; on exit a reader left blocked on it (a failing test) is let go."""
    os.mkfifo(path)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def refused(answer: httpx.Response) -> str:
    """The message of a 400."""
    assert answer.status_code == 400, answer.text
    message: str = answer.json()["result"]["error"]["message"]
    assert message.startswith(f"action: {TRUSTED_CA_PATH} "), message
    return message


async def test_fifos_and_other_non_files_are_refused_without_blocking(
    admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "yubico.pem").write_text((FIXTURES / "yubico-chain.pem").read_text())
    assert (await policy_answer(admin, store)).status_code == 200
    with fifo(store / "a.pem") as named_pipe:
        message = refused(await policy_answer(admin, store))
        assert "does not hold readable PEM certificates (a.pem: not a regular file)" in message
        message = refused(await policy_answer(admin, named_pipe))
        assert "is neither a file nor a directory" in message
    named_pipe.unlink()
    (store / "sub.pem").mkdir()
    assert "sub.pem: not a regular file" in refused(await policy_answer(admin, store))


async def test_missing_unreadable_and_oversized_are_told_apart(
    admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    assert refused(await policy_answer(admin, tmp_path / "nothing.pem")).endswith(
        "nothing.pem' does not exist"
    )
    not_pem = tmp_path / "notes.pem"
    not_pem.write_text("no certificate here")
    assert "does not hold readable PEM certificates" in refused(await policy_answer(admin, not_pem))
    big = tmp_path / "big.pem"
    big.write_bytes((FIXTURES / "yubico-chain.pem").read_bytes() * 1000)
    assert big.stat().st_size > MAX_TRUST_FILE_BYTES
    message = refused(await policy_answer(admin, big))
    assert f"big.pem: larger than {MAX_TRUST_FILE_BYTES // 1024} KiB" in message


async def test_the_loader_refuses_a_fifo_at_once(tmp_path: Path) -> None:
    with fifo(tmp_path / "ca.pem") as named_pipe:
        for path in (tmp_path, named_pipe):
            with pytest.raises(ValueError, match=r"^ca.pem: not a regular file$"):
                await asyncio.wait_for(asyncio.to_thread(load_trust_store, path), ANSWER_SECONDS)


def test_a_certificate_of_an_unknown_version_is_a_value_error(tmp_path: Path) -> None:
    import base64

    from tests.support.pki import self_signed_pem

    der = bytearray(base64.b64decode("".join(self_signed_pem().splitlines()[1:-1])))
    at = der.index(bytes.fromhex("a003020102"))
    der[at + 4] = 0x05  # X.509 v6 does not exist
    body = base64.encodebytes(bytes(der)).decode()
    bundle = tmp_path / "odd.pem"
    bundle.write_text(f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n")
    with pytest.raises(ValueError, match=r"unknown X\.509 version"):
        load_trust_store(bundle)
