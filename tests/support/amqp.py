"""A throw-away RabbitMQ virtual host per test, so runs never see each other's queues."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika

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


def queue_counts(url: str, queue: str) -> dict[str, int]:
    """*queue*'s ready messages and consumers, as the queue itself answers (no stats lag)."""

    async def ask() -> dict[str, int]:
        # rabbitmqctl's counts of a quorum queue are metrics, up to seconds old; a passive
        # declare asks the queue.
        connection = await aio_pika.connect(url)
        try:
            channel = await connection.channel()
            declared = (await channel.declare_queue(queue, passive=True)).declaration_result
            return {
                "ready": int(declared.message_count or 0),
                "consumers": int(declared.consumer_count or 0),
            }
        finally:
            await connection.close()

    return asyncio.run(ask())


def queued_serials(url: str, queue: str) -> list[str]:
    """The token serials (``subject``) of the messages ready in *queue*, left in place."""

    async def peek() -> list[str]:
        connection = await aio_pika.connect(url)
        serials: list[str] = []
        try:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue, passive=True)
            # Unacked gets go back to the queue when the connection closes.
            while (message := await declared.get(no_ack=False, fail=False)) is not None:
                serials.append(str(json.loads(message.body)["subject"]))
        finally:
            await connection.close()
        return serials

    return asyncio.run(peek())
