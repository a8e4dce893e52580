"""SoftHSM2 tokens for tests: a token directory and configuration of the test's own."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from services.ca_worker.keystores.pkcs11 import rescan_modules

MODULE_PATHS = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
)
PIN, SO_PIN = "1234-user", "5678-officer"


@dataclass(frozen=True)
class SoftHSM:
    """One initialised SoftHSM2 token and how to reach it."""

    conf: Path
    module: str
    label: str
    pin_file: Path

    def uri(self, key: str = "ca", *, module: bool = True) -> str:
        """The RFC 7512 URI of private key *key* on this token."""
        uri = f"pkcs11:token={quote(self.label)};object={quote(key)};type=private"
        return f"{uri}?module-path={self.module}" if module else uri

    def env(self) -> dict[str, str]:
        """What a process needs in its environment to see this token."""
        return {"SOFTHSM2_CONF": str(self.conf)}


def softhsm_module() -> str:
    """The SoftHSM2 PKCS#11 module; fails the test (never skips) when softhsm2 is missing."""
    for path in MODULE_PATHS:
        if Path(path).is_file():
            return path
    if shutil.which("softhsm2-util") is None:
        pytest.fail("softhsm2 is not installed (apt-get install softhsm2; .ci/run installs it)")
    pytest.fail(f"softhsm2-util is there but its module is in none of {', '.join(MODULE_PATHS)}")


@contextmanager
def softhsm_token(directory: Path, label: str = "certtoken") -> Iterator[SoftHSM]:
    """A fresh token *label* in its own token directory under *directory*, PIN in a file."""
    module = softhsm_module()
    tokens = directory / "tokens"
    tokens.mkdir(parents=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    pin_file = directory / "pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o600)
    before = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    try:
        done = subprocess.run(
            [
                *("softhsm2-util", "--init-token", "--free", "--label", label),
                *("--pin", PIN, "--so-pin", SO_PIN),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        # A module this process loaded for an earlier test reads the new configuration.
        rescan_modules()
        yield SoftHSM(conf, module, label, pin_file)
    finally:
        if before is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = before
