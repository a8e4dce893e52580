"""Helpers for notifier tests: SMTP servers, users and handlers through the API, token events."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from shared.events import CloudEvent, new_event, to_message
from shared.messaging.base import Broker
from shared.messaging.topology import EVENTS_EXCHANGE, event_routing_key
from tests.support.smtp import SmtpSink


def value(answer: httpx.Response) -> Any:
    """``result.value`` of a successful answer; fails the test with the answer otherwise."""
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["result"]["status"] is True, answer.text
    return body["result"]["value"]


async def add_user(
    client: httpx.AsyncClient,
    user: str = "alice",
    realm: str = "corp",
    email: str = "alice@example.org",
    givenname: str = "Alice",
    surname: str = "Liddell",
) -> None:
    """A user of the internal store."""
    value(
        await client.post(
            "/user/",
            json={
                "user": user,
                "realm": realm,
                "email": email,
                "givenname": givenname,
                "surname": surname,
            },
        )
    )


async def add_smtp_server(
    client: httpx.AsyncClient, identifier: str, sink: SmtpSink, **extra: Any
) -> None:
    """An SMTP server pointing at *sink*."""
    params = {
        "server": sink.host,
        "port": sink.port,
        "sender": "certtoken@example.org",
        "timeout": 5,
        **extra,
    }
    value(await client.post(f"/smtpserver/{identifier}", json=params))


async def add_handler(
    client: httpx.AsyncClient,
    options: dict[str, str],
    *,
    name: str = "notify owner",
    event: str = "token_init",
    conditions: dict[str, str] | None = None,
    ordering: int = 0,
) -> int:
    """A UserNotification/sendmail handler with *options* (privacyIDEA's option names)."""
    params: dict[str, Any] = {
        "name": name,
        "event": event,
        "handlermodule": "UserNotification",
        "action": "sendmail",
        "position": "post",
        "ordering": ordering,
        "conditions": conditions or {},
        "options": options,
    }
    handler_id: int = value(await client.post("/event", json=params))
    return handler_id


def token_event(event_type: str = "token_init", **data: Any) -> CloudEvent:
    """A token event as the ca_worker (or issue 3's approvals) would publish it."""
    values: dict[str, Any] = {
        "serial": "CRT0000AB12",
        "tokentype": "certificate",
        "rollout_state": "pending",
        "username": "alice",
        "realm": "corp",
        "ca": "localca",
        "template": "",
    }
    values.update(data)
    return new_event(event_type, "certtoken/test", str(values["serial"]), values, "corr-notify")


async def publish(broker: Broker, event: CloudEvent) -> None:
    """Publish *event* on the events exchange, as its writer's relay would."""
    await broker.publish(EVENTS_EXCHANGE, event_routing_key(event.type), to_message(event))


async def deliveries(client: httpx.AsyncClient, **query: Any) -> list[dict[str, Any]]:
    """Delivery records matching *query* (``status``, ``event_id``, ``serial`` ...)."""
    found: list[dict[str, Any]] = value(await client.get("/event/deliveries", params=query))[
        "deliveries"
    ]
    return found


async def wait_deliveries(
    client: httpx.AsyncClient, count: int, within: float = 30, **query: Any
) -> list[dict[str, Any]]:
    """Wait until at least *count* delivery records match *query*."""
    deadline = time.monotonic() + within
    while True:
        found = await deliveries(client, **query)
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(found)} of {count} deliveries ({query}) within {within} s")
        await asyncio.sleep(0.05)
