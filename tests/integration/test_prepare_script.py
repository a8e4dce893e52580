"""``.ci/prepare``, the set-up `make test` and `.ci/run` share, in its check-only mode."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "prepare"


def _check(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), "--check"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_check_sees_the_running_services_and_changes_nothing() -> None:
    result = _check()
    assert result.returncode == 0, result.stderr
    assert "RabbitMQ is running on port 5672" in result.stderr
    assert "PostgreSQL is running on port 5432" in result.stderr
    assert "system packages present" in result.stderr
    assert "installing" not in result.stderr and "starting" not in result.stderr


def test_check_reports_services_that_are_down() -> None:
    result = _check(RABBITMQ_PORT=str(_free_port()), POSTGRES_PORT=str(_free_port()))
    assert result.returncode == 1
    assert "RabbitMQ is down" in result.stderr
    assert "PostgreSQL is down" in result.stderr
    assert "not ready: run .ci/prepare" in result.stderr


def test_an_unknown_argument_is_refused() -> None:
    result = _check_args("--install-everything")
    assert result.returncode == 1
    assert "unknown argument --install-everything" in result.stderr


def _check_args(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=30, check=False
    )


def test_scripts_parse_and_make_test_runs_prepare_first() -> None:
    for script in (SCRIPT, ROOT / ".ci" / "run"):
        assert os.access(script, os.X_OK), f"{script} is not executable"
        parsed = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert parsed.returncode == 0, parsed.stderr
        if shutil.which("shellcheck"):
            linted = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
            assert linted.returncode == 0, linted.stdout
    ci_run = (ROOT / ".ci" / "run").read_text()
    # Shared, not copied: CI's entry point installs and starts nothing itself.
    assert ".ci/prepare" in ci_run
    assert "apt-get" not in ci_run and "pg_ctlcluster" not in ci_run
    # Run under `make test` (as .ci/run does, with PREPARE=:), the outer make's variables
    # reach this one through MAKEFLAGS: the dry run must see the Makefile's own defaults.
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PREPARE", "PYTEST_ARGS", "JUNIT_DIR")
    }
    dry = subprocess.run(
        ["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, check=True, env=clean
    )
    commands = dry.stdout.splitlines()
    prepare = next(i for i, line in enumerate(commands) if ".ci/prepare" in line)
    pytest = next(i for i, line in enumerate(commands) if "-m pytest" in line)
    assert prepare < pytest
