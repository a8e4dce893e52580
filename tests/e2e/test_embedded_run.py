"""``certtoken run``: the README's first command, then an operator's first enrollment."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.amqp import vhost_url
from tests.support.pki import openssl_csr, openssl_verify
from tests.support.procs import embedded, start_embedded


@pytest.fixture(params=["in-process", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def amqp(request: pytest.FixtureRequest) -> Iterator[str]:
    """No broker URL (the in-process broker) or a fresh RabbitMQ vhost."""
    if request.param == "in-process":
        yield ""
        return
    with vhost_url() as url:
        yield url


def test_first_enrollment_on_the_embedded_system(tmp_path: Path, amqp: str) -> None:
    procs = embedded(tmp_path / "data", tmp_path, amqp)
    url = start_embedded(procs)
    try:
        procs.wait_http("run", f"{url}/readyz", timeout=60)
        created = procs.cli(
            "ca", "create", "myca", "--subject", "/CN=My CA/O=Example", "--key-type", "ec-p384"
        )
        assert created.returncode == 0, created.stderr
        again = procs.cli("ca", "create", "myca")
        assert again.returncode == 1
        assert "exists" in again.stderr
        # The first start made an administrator whose password only the data dir holds.
        first = tmp_path / "data" / "initial-admin-password"
        assert first.stat().st_mode & 0o077 == 0
        password = first.read_text().strip()
        assert password not in procs.log("run")
        page = httpx.get(f"{url}/ui/")
        assert page.status_code == 200 and "certtoken" in page.text
        added = procs.cli("admin", "add", "ops", "-p", "ops-password-1")
        assert added.returncode == 0, added.stderr

        auth = httpx.post(f"{url}/auth", json={"username": "admin", "password": password})
        assert auth.status_code == 200, auth.text
        assert auth.json()["result"]["value"]["role"] == "admin"
        headers = {"Authorization": auth.json()["result"]["value"]["token"]}
        user = httpx.post(
            f"{url}/user/",
            headers=headers,
            data={"user": "alice", "realm": "corp", "email": "alice@example.org"},
        )
        assert user.status_code == 200, user.text
        answer = httpx.post(
            f"{url}/token/init",
            headers=headers,
            data={
                "type": "certificate",
                "request": openssl_csr(tmp_path),
                "ca": "myca",
                "user": "alice",
                "realm": "corp",
            },
            timeout=30,
        )
        detail = answer.json()["detail"]
        assert detail["rollout_state"] == "enrolled", answer.text
        connectors = httpx.get(f"{url}/caconnector/", headers=headers).json()["result"]["value"]
        assert {c["connectorname"] for c in connectors} == {"localca", "myca"}
        cacert = next(c["cacert"] for c in connectors if c["connectorname"] == "myca")
        verified = openssl_verify(tmp_path, cacert, detail["certificate"])
        assert verified.returncode == 0, verified.stderr
        assert (tmp_path / "data" / "ca" / "myca" / "cakey.pem").stat().st_mode & 0o077 == 0
        assert "BEGIN ENCRYPTED PRIVATE KEY" in (tmp_path / "data/ca/myca/cakey.pem").read_text()
    finally:
        status = procs.stop("run", signal.SIGTERM)
    assert status == 0, procs.log("run")
