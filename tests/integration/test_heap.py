"""A login's scrypt buffer goes back to the system once the service's heap is settled."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Three logins' password checks on threads, as the api runs them; prints how much RSS they kept.
_LOGINS = """
import asyncio
from services.runtime import unmap_big_blocks
from shared.security import hash_password, verify_password

def rss_kib() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit("no VmRSS")

async def logins(stored: str) -> None:
    for _ in range(3):
        assert await asyncio.to_thread(verify_password, "a long password", stored)

unmap_big_blocks()
stored = hash_password("a long password")
before = rss_kib()
asyncio.run(logins(stored))
print(rss_kib() - before)
"""


def kept_kib() -> int:
    """RSS in KiB that three logins left behind in a fresh interpreter with a settled heap."""
    run = subprocess.run(
        [sys.executable, "-c", _LOGINS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(run.stdout)


def test_logins_keep_no_scrypt_buffer_resident() -> None:
    # scrypt (N=2^14, r=8) needs 16 MiB; without the fixed threshold glibc keeps it after the
    # second login (about 16,000 KiB here).
    assert kept_kib() < 4 * 1024
