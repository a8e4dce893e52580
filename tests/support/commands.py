"""The ``certtoken`` command run as an operator runs it: another process, settings by environment."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from shared.config import Settings

_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Completed:
    """A finished command: exit status and output."""

    returncode: int
    stdout: str
    stderr: str


def command_env(settings: Settings) -> dict[str, str]:
    """The environment naming *settings*' data dir and database (nothing else of the test's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTTOKEN_")}
    env.update(CERTTOKEN_DATA_DIR=str(settings.data_dir), PYTHONPATH=str(_ROOT))
    if settings.database_url:
        env["CERTTOKEN_DATABASE_URL"] = settings.database_url
    if settings.secret_key_file is not None:
        env["CERTTOKEN_SECRET_KEY_FILE"] = str(settings.secret_key_file)
    return env


async def start_certtoken(settings: Settings, *args: str) -> asyncio.subprocess.Process:
    """Start ``certtoken ARGS`` for *settings*' system; the caller awaits it."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=command_env(settings),
        cwd=_ROOT,
    )


async def finished(process: asyncio.subprocess.Process) -> Completed:
    """Wait (bounded: two minutes) for a started command."""
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return Completed(process.returncode, out.decode(), err.decode())


async def certtoken(settings: Settings, *args: str) -> Completed:
    """Run ``certtoken ARGS`` for *settings*' system to its end."""
    return await finished(await start_certtoken(settings, *args))
