"""The services as real separate processes, started with the ``certtoken`` command."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.http import tls_context

CERTTOKEN = [sys.executable, "-m", "services.cli"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Processes:
    """Started service processes, their logs, and the environment they share."""

    env: dict[str, str]
    logdir: Path
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # Variables that win over every process's own (a benchmark's --setting).
    overrides: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a one-shot ``certtoken`` command."""
        return subprocess.run(
            [*CERTTOKEN, *args],
            env={**self.env, **self.overrides},
            capture_output=True,
            text=True,
            timeout=120,
        )

    def start(self, name: str, *args: str, extra_env: dict[str, str] | None = None) -> None:
        """Start a long-running service process called *name*."""
        log = (self.logdir / f"{name}.log").open("ab")
        env = {**self.env, **(extra_env or {}), **self.overrides}
        self.running[name] = subprocess.Popen(
            [*CERTTOKEN, *args], env=env, stdout=log, stderr=subprocess.STDOUT
        )

    def wait_http(self, name: str, url: str, timeout: float = 30) -> None:
        """Wait until *url* answers 200 while process *name* lives."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.running[name]
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited {proc.returncode}: {self.log(name)}")
            try:
                if httpx.get(url, timeout=1, verify=tls_context()).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{name} not ready at {url}: {self.log(name)}")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal process *name* and wait for it to end; return its exit status."""
        proc = self.running.pop(name)
        if proc.poll() is None:
            proc.send_signal(sig)
        return proc.wait(timeout)

    def log(self, name: str) -> str:
        """The tail of process *name*'s log."""
        path = self.logdir / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop_all(self) -> None:
        """Stop every process still running (kill those that do not drain in time)."""
        for name in list(self.running):
            try:
                self.stop(name, timeout=15)
            except subprocess.TimeoutExpired:
                self.stop(name, signal.SIGKILL)


def service_env(data_dir: Path, amqp_url: str, database_url: str, **extra: str) -> dict[str, str]:
    """The environment every process of one system shares."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTTOKEN_")}
    env.update(
        CERTTOKEN_DATA_DIR=str(data_dir),
        CERTTOKEN_AMQP_URL=amqp_url,
        CERTTOKEN_DATABASE_URL=database_url,
        CERTTOKEN_RETRY_DELAYS_MS="[200, 500]",
        CERTTOKEN_OUTBOX_POLL_SECONDS="0.2",
        CERTTOKEN_LOG_LEVEL="INFO",
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
    )
    env.update(extra)
    return env


def embedded(data_dir: Path, logdir: Path, amqp_url: str = "", **extra: str) -> Processes:
    """A system for ``certtoken run``: SQLite in *data_dir* (the default), broker as given."""
    env = service_env(data_dir, amqp_url, "", **extra)
    env.pop("CERTTOKEN_DATABASE_URL")
    return Processes(env, logdir)


def start_embedded(procs: Processes, name: str = "run") -> str:
    """Start ``certtoken run`` (all three services in one process) as *name*; its URL."""
    port = free_port()
    procs.start(name, "run", "--port", str(port))
    return f"http://127.0.0.1:{port}"
