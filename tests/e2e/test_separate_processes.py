"""api, ca_worker and notifier as separate processes on real RabbitMQ."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.support.pki import make_csr, openssl_csr, openssl_verify
from tests.support.procs import Processes, free_port

pytestmark = pytest.mark.rabbitmq

ADMIN = {"username": "admin", "password": "admin-password-1"}


def start_api(procs: Processes, wait: str = "5") -> str:
    port = free_port()
    procs.start("api", "api", "--port", str(port), extra_env={"CERTTOKEN_INIT_WAIT_SECONDS": wait})
    url = f"http://127.0.0.1:{port}"
    procs.wait_http("api", f"{url}/readyz")
    return url


def start_worker(procs: Processes, name: str = "ca-worker", prefetch: int = 64) -> None:
    port = free_port()
    env = {"CERTTOKEN_HEALTH_PORT": str(port), "CERTTOKEN_PREFETCH": str(prefetch)}
    procs.start(name, "ca-worker", extra_env=env)
    procs.wait_http(name, f"http://127.0.0.1:{port}/readyz")


def login(url: str) -> str:
    answer = httpx.post(f"{url}/auth", json=ADMIN)
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["result"]["value"]["token"]
    return token


def add_user(url: str, token: str) -> None:
    answer = httpx.post(
        f"{url}/user/", json={"user": "alice", "realm": "corp"}, headers={"Authorization": token}
    )
    assert answer.status_code == 200, answer.text


def test_enrollment_through_three_processes(unprepared: Processes, tmp_path: Path) -> None:
    processes = unprepared
    # Prepared with the operator's commands, as the README says.
    for args in (
        ("db", "upgrade"),
        ("ca", "create", "localca"),
        ("admin", "add", ADMIN["username"], "-p", ADMIN["password"]),
    ):
        done = processes.cli(*args)
        assert done.returncode == 0, done.stderr
    url = start_api(processes)
    start_worker(processes)
    notifier_port = free_port()
    processes.start("notifier", "notifier", extra_env={"CERTTOKEN_HEALTH_PORT": str(notifier_port)})
    processes.wait_http("notifier", f"http://127.0.0.1:{notifier_port}/readyz")
    token = login(url)
    add_user(url, token)
    answer = httpx.post(
        f"{url}/token/init",
        json={
            "type": "certificate",
            "request": openssl_csr(tmp_path),
            "ca": "localca",
            "user": "alice",
            "realm": "corp",
        },
        headers={"Authorization": token, "X-Correlation-ID": "e2e-corr-1"},
        timeout=30,
    )
    detail = answer.json()["detail"]
    assert detail["rollout_state"] == "enrolled", answer.text
    cacert = httpx.get(f"{url}/caconnector/localca", headers={"Authorization": token}).json()[
        "result"
    ]["value"][0]["cacert"]
    verified = openssl_verify(tmp_path, cacert, detail["certificate"])
    assert verified.returncode == 0, verified.stderr
    # The correlation id went through the job and the event into the other services' logs.
    deadline = time.monotonic() + 10
    while "e2e-corr-1" not in processes.log("notifier") and time.monotonic() < deadline:
        time.sleep(0.2)
    api_lines = [line for line in processes.log("api").splitlines() if "e2e-corr-1" in line]
    assert any('"path": "/token/init"' in line and '"status": 200' in line for line in api_lines)
    assert "e2e-corr-1" in processes.log("ca-worker")
    assert "e2e-corr-1" in processes.log("notifier")
    assert processes.stop("api") == 0
    assert processes.stop("ca-worker") == 0
    assert processes.stop("notifier") == 0


async def _submit(url: str, token: str, count: int) -> list[str]:
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": token}, timeout=60
    ) as client:

        async def one(i: int) -> str:
            answer = await client.post(
                "/token/init",
                json={
                    "type": "certificate",
                    "request": make_csr(f"user{i}"),
                    "ca": "localca",
                    "user": "alice",
                    "realm": "corp",
                },
            )
            assert answer.status_code == 200, answer.text
            serial: str = answer.json()["detail"]["serial"]
            return serial

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def _tokens(url: str, token: str) -> list[dict[str, object]]:
    answer = httpx.get(f"{url}/token/", params={"pagesize": 1000}, headers={"Authorization": token})
    tokens: list[dict[str, object]] = answer.json()["result"]["value"]["tokens"]
    return tokens


def _enrolled(url: str, token: str) -> int:
    answer = httpx.get(
        f"{url}/token/",
        params={"rollout_state": "enrolled", "pagesize": 1},
        headers={"Authorization": token},
    )
    count: int = answer.json()["result"]["value"]["count"]
    return count


def _wait_enrolled(url: str, token: str, serials: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = {t["serial"]: t["rollout_state"] for t in _tokens(url, token)}
        if all(states.get(s) == "enrolled" for s in serials):
            return
        time.sleep(0.3)
    raise AssertionError(f"not all enrolled: {states}")


def _assert_signed_once(url: str, token: str, serials: list[str]) -> None:
    tokens = [t for t in _tokens(url, token) if t["serial"] in serials]
    assert len(tokens) == len(serials)
    cert_serials = [t["info"]["certificate_serial"] for t in tokens]  # type: ignore[index]
    assert len(set(cert_serials)) == len(serials), "duplicate certificate serial"
    pems = [t["info"]["certificate"] for t in tokens]  # type: ignore[index]
    assert len(set(pems)) == len(serials)


def _issued_count(processes: Processes) -> int:
    import sqlite3

    url = processes.env["CERTTOKEN_DATABASE_URL"]
    if not url.startswith("sqlite"):
        import asyncio as aio

        import asyncpg

        async def count() -> int:
            conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
            try:
                return int(await conn.fetchval("SELECT count(*) FROM issued_certificate"))
            finally:
                await conn.close()

        return aio.run(count())
    with sqlite3.connect(url.split("///", 1)[1]) as conn:
        return int(conn.execute("SELECT count(*) FROM issued_certificate").fetchone()[0])


def test_jobs_wait_for_a_stopped_worker(processes: Processes) -> None:
    url = start_api(processes, wait="0")
    token = login(url)
    add_user(url, token)
    serials = asyncio.run(_submit(url, token, 50))
    assert len(set(serials)) == 50
    assert {t["rollout_state"] for t in _tokens(url, token)} == {"submitted"}
    start_worker(processes)
    _wait_enrolled(url, token, serials)
    _assert_signed_once(url, token, serials)
    assert _issued_count(processes) == 50


def test_worker_killed_mid_batch_loses_and_duplicates_nothing(processes: Processes) -> None:
    url = start_api(processes, wait="0")
    token = login(url)
    add_user(url, token)
    serials = asyncio.run(_submit(url, token, 300))
    # One job at a time, so that the kill surely lands while work remains.
    start_worker(processes, prefetch=1)
    deadline = time.monotonic() + 30
    while _enrolled(url, token) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    processes.stop("ca-worker", signal.SIGKILL)
    done = _enrolled(url, token)
    assert 0 < done < 300, f"kill did not land mid-batch ({done} enrolled)"
    start_worker(processes, "ca-worker-2")
    _wait_enrolled(url, token, serials)
    _assert_signed_once(url, token, serials)
    assert _issued_count(processes) == 300
