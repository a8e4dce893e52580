"""Request bodies: too deep is a 400 and too large a 413, before parsing; never a traceback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from services.api.params import MAX_BODY, MAX_DEPTH, too_deep
from tests.support.stack import Stack

JSON = {"content-type": "application/json"}
DEEP = b"[" * 1000
HANDLER = {
    "name": "deep",
    "event": "token_init",
    "handlermodule": "UserNotification",
    "action": "sendmail",
    "options": {"To": "tokenowner"},
}


def message_of(answer: httpx.Response, status: int) -> str:
    """The error message of a refused call, after checking its status."""
    assert answer.status_code == status, answer.text
    message: str = answer.json()["result"]["error"]["message"]
    return message


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing at ERROR or above, and no traceback, was logged."""
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


async def test_deep_json_is_a_400_on_every_body(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    async with stack.client() as anonymous:
        for body in (DEEP, b'{"username": ' + DEEP, b'{"a": ' + b'{"a": ' * 200 + b"1"):
            answer = await anonymous.post("/auth", content=body, headers=JSON)
            assert message_of(answer, 400) == f"body: JSON nested deeper than {MAX_DEPTH} levels"
    async with stack.client(await stack.admin_token()) as admin:
        for path in ("/token/init", "/event", "/event/test", "/policy/p", "/user/"):
            answer = await admin.post(path, content=b'{"data": ' + DEEP, headers=JSON)
            assert "nested deeper" in message_of(answer, 400), path
        # JSON inside a form field is parsed by the same guard.
        conditions = "[" * 1000
        form = {**HANDLER, "event": "token_init", "conditions": conditions}
        form.pop("options")
        answer = await admin.post("/event", data={**form, "option.To": "tokenowner"})
        assert message_of(answer, 400) == f"conditions: JSON nested deeper than {MAX_DEPTH} levels"
        # Brackets inside strings are text, not nesting.
        test = {"event": "token_init", "data": {"serial": "[" * 5000, "note": '"]}' * 100}}
        assert (await admin.post("/event/test", json=test)).status_code == 200
        nested = {"event": "token_init", "data": {"a": [[[[{"b": [1]}]]]]}}
        assert (await admin.post("/event/test", json=nested)).status_code == 200
    no_errors_logged(caplog)


async def test_large_bodies_are_a_413(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    big = b'{"username": "' + b"a" * MAX_BODY + b'", "password": "x"}'
    async with stack.client() as anonymous:
        answer = await anonymous.post("/auth", content=big, headers=JSON)
        assert message_of(answer, 413) == f"body: larger than {MAX_BODY} bytes"

        async def chunks() -> AsyncIterator[bytes]:
            # No Content-Length: the limit holds while the body streams in.
            for _ in range(MAX_BODY // 4096 + 2):
                yield b" " * 4096

        answer = await anonymous.post("/auth", content=chunks(), headers=JSON)
        assert message_of(answer, 413) == f"body: larger than {MAX_BODY} bytes"
        form = {"username": "a" * MAX_BODY, "password": "x"}
        assert (await anonymous.post("/auth", data=form)).status_code == 413
        # Up to the limit is read: a wrong password, not a size, is what this one is refused for.
        login = b'{"username": "nobody", "password": "wrong-password"}'
        fits = login + b" " * (MAX_BODY - len(login))
        assert message_of(await anonymous.post("/auth", content=fits, headers=JSON), 401)
    no_errors_logged(caplog)


async def test_odd_json_is_a_400(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    async with stack.client() as anonymous:
        for body in (b'{"username": NaN}', b'{"username": ' + b"9" * 5000 + b"}", b"\xff\xfe{"):
            answer = await anonymous.post("/auth", content=body, headers=JSON)
            assert message_of(answer, 400).startswith("body: not valid JSON")
    no_errors_logged(caplog)


def test_depth_scan() -> None:
    assert not too_deep(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)
    assert too_deep(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
    assert not too_deep(b'["' + b"[" * 100 + b'"]')
    assert not too_deep(b'["\\"' + b"{" * 100 + b'"]')
    assert too_deep(b"[]" * 1000 + b"{" * (MAX_DEPTH + 1))
    assert not too_deep(b"[]" * 100_000)
