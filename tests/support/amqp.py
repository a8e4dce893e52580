"""A throw-away RabbitMQ virtual host per test, so runs never see each other's queues."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlsplit, urlunsplit

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"


def base_url() -> str:
    """The broker the tests use."""
    return os.environ.get("CERTTOKEN_TEST_AMQP_URL", DEFAULT_URL)


@contextmanager
def vhost_url() -> Iterator[str]:
    """Create a fresh vhost (with rabbitmqctl) and yield its URL; delete it afterwards."""
    name = f"certtoken-test-{uuid.uuid4().hex[:10]}"
    user = urlsplit(base_url()).username or "guest"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", name], check=True, capture_output=True)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", name, user, ".*", ".*", ".*"],
        check=True,
        capture_output=True,
    )
    parts = urlsplit(base_url())
    try:
        yield urlunsplit((parts.scheme, parts.netloc, "/" + quote(name, safe=""), "", ""))
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], capture_output=True)
