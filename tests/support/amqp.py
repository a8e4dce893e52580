"""A throw-away RabbitMQ virtual host per test, so runs never see each other's queues."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from tests.support.vhosts import pool_for

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"


def base_url() -> str:
    """The broker the tests use."""
    return os.environ.get("CERTTOKEN_TEST_AMQP_URL", DEFAULT_URL)


@contextmanager
def vhost_url() -> Iterator[str]:
    """Yield the URL of a fresh vhost; it is deleted afterwards (see tests/support/vhosts.py)."""
    parts = urlsplit(base_url())
    pool = pool_for(parts.username or "guest")
    name = pool.take()
    try:
        yield urlunsplit((parts.scheme, parts.netloc, "/" + quote(name, safe=""), "", ""))
    finally:
        pool.give_back(name)


COUNTED = ("name", "messages_ready", "messages_unacknowledged", "consumers")


def queue_counts(url: str, queue: str) -> dict[str, int]:
    """*queue*'s ready and unacknowledged messages and its consumers, as RabbitMQ counts them."""
    vhost = unquote(urlsplit(url).path[1:]) or "/"
    listed = subprocess.run(
        [*("rabbitmqctl", "-q", "list_queues", "-p", vhost, "--no-table-headers"), *COUNTED],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for line in listed.splitlines():
        name, ready, unacked, consumers = line.split("\t")
        if name == queue:
            return {"ready": int(ready), "unacked": int(unacked), "consumers": int(consumers)}
    raise LookupError(f"no queue {queue!r} in {vhost!r}")
