"""For benchmarks: a certtoken system as service processes, prepared as an operator would."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.support.procs import Processes, free_port

ADMIN = {"username": "admin", "password": "bench-password-1"}
CA = "benchca"
OWNER = {"user": "alice", "realm": "bench"}
QUIET = {"CERTTOKEN_LOG_LEVEL": "WARNING"}
POSTGRES_ENV = "CERTTOKEN_TEST_POSTGRES_URL"
DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def prepare(procs: Processes) -> None:
    """Migrate, create the EC P-256 CA and the administrator with the ``certtoken`` command."""
    for args in (
        ("db", "upgrade"),
        ("ca", "create", CA, "--key-type", "ec-p256"),
        ("admin", "add", ADMIN["username"], "-p", ADMIN["password"]),
    ):
        done = procs.cli(*args)
        if done.returncode != 0:
            raise SystemExit(f"certtoken {' '.join(args)} failed: {done.stderr}")


def start_api(procs: Processes, name: str = "api", init_wait: str = "10") -> str:
    """Start an api process called *name*; return its base URL once it is ready."""
    port = free_port()
    env = {**QUIET, "CERTTOKEN_INIT_WAIT_SECONDS": init_wait}
    procs.start(name, "api", "--port", str(port), extra_env=env)
    url = f"http://127.0.0.1:{port}"
    procs.wait_http(name, f"{url}/readyz")
    return url


def start_service(procs: Processes, name: str, command: str) -> str:
    """Start a ``ca-worker`` or ``notifier`` process called *name*; return its metrics URL."""
    health = free_port()
    procs.start(name, command, extra_env={**QUIET, "CERTTOKEN_HEALTH_PORT": str(health)})
    procs.wait_http(name, f"http://127.0.0.1:{health}/readyz")
    return f"http://127.0.0.1:{health}/metrics"


def admin_token(url: str) -> str:
    """Log in as the administrator and add the owner of the benchmark's tokens."""
    token: str = httpx.post(f"{url}/auth", json=ADMIN).json()["result"]["value"]["token"]
    httpx.post(f"{url}/user/", json=OWNER, headers={"Authorization": token}).raise_for_status()
    return token


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one run, dropped afterwards; yields its URL."""
    import asyncpg

    base = os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES)
    name = f"certtoken_bench_{uuid.uuid4().hex[:12]}"

    async def execute(sql: str) -> None:
        conn = await asyncpg.connect(base.replace("postgresql+asyncpg", "postgresql"))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(execute(f'CREATE DATABASE "{name}"'))
    try:
        yield base.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
