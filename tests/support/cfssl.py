"""A real ``cfssl serve`` on 127.0.0.1 with its own CA, for the cfssl connector's tests."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

AUTH_KEY = "00112233445566778899aabbccddeeff"
AUTHED_PROFILE = "authed"

# The certificate database schema of cfssl's sqlite driver (needed by its revoke endpoint).
_SCHEMA = """
CREATE TABLE certificates (
  serial_number            blob NOT NULL,
  authority_key_identifier blob NOT NULL,
  ca_label                 blob,
  status                   blob NOT NULL,
  reason                   int,
  expiry                   timestamp,
  revoked_at               timestamp,
  pem                      blob NOT NULL,
  PRIMARY KEY(serial_number, authority_key_identifier)
);
CREATE TABLE ocsp_responses (
  serial_number            blob NOT NULL,
  authority_key_identifier blob NOT NULL,
  body                     blob NOT NULL,
  expiry                   timestamp,
  PRIMARY KEY(serial_number, authority_key_identifier)
);
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class CfsslServer:
    """``cfssl serve`` with a fresh ECDSA CA, a plain and an authenticated profile."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._make_ca()
        self.cacert = (self.dir / "ca.pem").read_text()
        (self.dir / "config.json").write_text(
            json.dumps(
                {
                    "signing": {
                        "default": {"expiry": "8760h", "usages": ["digital signature"]},
                        "profiles": {
                            "client": {
                                "expiry": "720h",
                                "usages": ["digital signature", "client auth"],
                            },
                            AUTHED_PROFILE: {
                                "expiry": "720h",
                                "usages": ["digital signature", "client auth"],
                                "auth_key": "k1",
                            },
                        },
                    },
                    "auth_keys": {"k1": {"type": "standard", "key": AUTH_KEY}},
                }
            )
        )
        with sqlite3.connect(self.dir / "certs.db") as db:
            db.executescript(_SCHEMA)
        (self.dir / "db.json").write_text(
            json.dumps({"driver": "sqlite3", "data_source": str(self.dir / "certs.db")})
        )

    def _make_ca(self) -> None:
        cfssl, cfssljson = shutil.which("cfssl"), shutil.which("cfssljson")
        if not cfssl or not cfssljson:
            raise RuntimeError("cfssl is not installed (Debian package golang-cfssl)")
        (self.dir / "ca-csr.json").write_text(
            json.dumps({"CN": "certtoken test cfssl CA", "key": {"algo": "ecdsa", "size": 256}})
        )
        made = subprocess.run(
            [cfssl, "gencert", "-initca", "ca-csr.json"],
            cwd=self.dir,
            capture_output=True,
            check=True,
            timeout=60,
        )
        subprocess.run(
            [cfssljson, "-bare", "ca"], cwd=self.dir, input=made.stdout, check=True, timeout=60
        )

    def start(self) -> None:
        """Start serving (on the same port each time) and wait until it accepts connections."""
        log = (self.dir / "serve.log").open("ab")
        self._proc = subprocess.Popen(
            [
                "cfssl",
                "serve",
                "-address",
                "127.0.0.1",
                "-port",
                str(self.port),
                "-ca",
                "ca.pem",
                "-ca-key",
                "ca-key.pem",
                "-config",
                "config.json",
                "-db-config",
                "db.json",
            ],
            cwd=self.dir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"cfssl serve exited: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"cfssl serve did not listen: {self.log()}")

    @property
    def pid(self) -> int:
        """The process id of ``cfssl serve`` (it must be running)."""
        assert self._proc is not None, "cfssl serve is not running"
        return self._proc.pid

    def stop(self) -> None:
        """Stop serving."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(10)
        self._proc = None

    def log(self) -> str:
        """The server's log."""
        path = self.dir / "serve.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def status_of(self, serial: int) -> str:
        """What cfssl's certificate database says of *serial* ("good", "revoked", or "")."""
        with sqlite3.connect(self.dir / "certs.db") as db:
            row = db.execute(
                "SELECT status FROM certificates WHERE serial_number = ?", (str(serial),)
            ).fetchone()
        return str(row[0]) if row else ""

    def issued(self) -> int:
        """How many certificates cfssl's database holds."""
        with sqlite3.connect(self.dir / "certs.db") as db:
            (count,) = db.execute("SELECT count(*) FROM certificates").fetchone()
        return int(count)
