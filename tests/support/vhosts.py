"""Throw-away RabbitMQ virtual hosts, made and removed in batches.

Every ``rabbitmqctl`` call starts an Erlang VM (a second or more), and a vhost took three of
them; a batch of vhosts takes one call to make (``import_definitions``) and one to remove.
A vhost is never handed out twice; used ones are removed once a batch of them has gathered,
and whatever is left when the process exits.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import tempfile
import threading
import uuid

PREFIX = "certtoken-test-"
BATCH = 8
# rabbitmqctl runs as the rabbitmq user: the definitions file must be readable by it.
_READABLE = 0o644


def _rabbitmqctl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``rabbitmqctl -q <args>``."""
    return subprocess.run(
        ["rabbitmqctl", "-q", *args], check=check, capture_output=True, text=True, timeout=120
    )


def create(names: list[str], user: str) -> None:
    """Create the vhosts *names*, each granting *user* everything, in one call."""
    definitions = {
        "vhosts": [{"name": name} for name in names],
        "permissions": [
            {"user": user, "vhost": name, "configure": ".*", "write": ".*", "read": ".*"}
            for name in names
        ],
    }
    handle, path = tempfile.mkstemp(prefix="certtoken-vhosts-", suffix=".json")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(definitions, file)
        os.chmod(path, _READABLE)
        _rabbitmqctl("import_definitions", path)
    finally:
        os.unlink(path)


def delete(names: list[str]) -> None:
    """Delete the vhosts *names* (with their queues), in one call where the broker allows."""
    if not names:
        return
    listed = ", ".join("<<" + json.dumps(name) + ">>" for name in names)
    done = _rabbitmqctl(
        "eval",
        f'[catch rabbit_vhost:delete(V, <<"certtoken-tests">>) || V <- [{listed}]], ok.',
        check=False,
    )
    if done.returncode != 0:
        for name in names:
            _rabbitmqctl("delete_vhost", name, check=False)


class VhostPool:
    """Fresh vhosts for one process: taken one at a time, made and removed a batch at a time."""

    def __init__(self, user: str, batch: int = BATCH) -> None:
        self.user = user
        self.batch = batch
        self._ready: list[str] = []
        self._used: list[str] = []
        self._lock = threading.Lock()

    def take(self) -> str:
        """A vhost nobody has used, granting the pool's user everything."""
        with self._lock:
            if not self._ready:
                names = [f"{PREFIX}{uuid.uuid4().hex[:10]}" for _ in range(self.batch)]
                create(names, self.user)
                self._ready = names
            return self._ready.pop()

    def give_back(self, name: str) -> None:
        """Mark *name* used; it is deleted with the next full batch."""
        with self._lock:
            self._used.append(name)
            if len(self._used) >= self.batch:
                used, self._used = self._used, []
                delete(used)

    def close(self) -> None:
        """Delete every vhost the pool made and still holds."""
        with self._lock:
            left, self._ready, self._used = self._ready + self._used, [], []
        delete(left)


_pools: dict[str, VhostPool] = {}
_pools_lock = threading.Lock()


def pool_for(user: str) -> VhostPool:
    """This process's pool of vhosts for *user*; closed when the process exits."""
    with _pools_lock:
        if user not in _pools:
            _pools[user] = VhostPool(user)
            atexit.register(_pools[user].close)
        return _pools[user]
