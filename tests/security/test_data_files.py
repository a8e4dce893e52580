"""Every file certtoken writes is 0600 in 0700 folders: database, WAL, secrets, CA, mail outbox."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.notify import add_handler, add_user, publish, token_event, wait_deliveries
from tests.support.procs import CERTTOKEN, service_env
from tests.support.stack import prepare, running_stack, settings_for


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The common umask 022, under which a file made without a mode is world-readable."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def modes(root: Path) -> dict[str, int]:
    """The permission bits of *root* and of everything under it, by relative path."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def assert_private(root: Path) -> None:
    """Folders are 0700 and files 0600, all the way down."""
    loose = {
        name: oct(mode)
        for name, mode in modes(root).items()
        if mode != (0o700 if (root / name).is_dir() else 0o600)
    }
    assert not loose, loose


@pytest.mark.usefixtures("loose_umask")
async def test_the_running_system_writes_owner_only_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = settings_for(data)
    await prepare(settings)
    # A database from before this rule, world-readable: tightened when the services start.
    (data / "certtoken.db").chmod(0o644)
    data.chmod(0o755)
    async with running_stack(settings) as stack:
        async with stack.client(await stack.admin_token()) as admin:
            await add_user(admin)
            await add_handler(admin, {"To": "tokenowner", "subject": "{serial}"})
            event = token_event(serial="CRT00000F11")
            await publish(stack.broker, event)
            await wait_deliveries(admin, 1, event_id=event.id, status="sent")
        written = modes(data)
        for name in (
            "certtoken.db",
            "certtoken.db-wal",
            "certtoken.db-shm",
            "secret_key",
            "ca_passphrase",
            "ca/localca/cakey.pem",
            "ca/localca/cacert.pem",
        ):
            assert written.get(name) == 0o600, (name, written)
        assert [n for n in written if n.startswith("mail-outbox/") and n.endswith(".eml")]
        assert_private(data)


def test_the_command_line_writes_owner_only_files(tmp_path: Path, loose_umask: None) -> None:
    data = tmp_path / "cli-data"
    database = f"sqlite+aiosqlite:///{data / 'certtoken.db'}"
    env = service_env(data, "", database)
    for args in (
        ("db", "upgrade"),
        ("ca", "create", "cli-ca"),
        ("admin", "add", "root", "-p", "pw-123456789"),
    ):
        done = subprocess.run(
            [*CERTTOKEN, *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
    assert modes(data)["certtoken.db"] == 0o600
    assert_private(data)
