"""Log format: readable lines on a terminal, JSON otherwise, an explicit setting winning."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from shared.config import Settings
from shared.logs import configure, correlation_id


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _log(stream: io.StringIO, log_format: object, **extra: object) -> str:
    configure("api", "INFO", log_format, stream)  # type: ignore[arg-type]
    token = correlation_id.set("cid-1")
    try:
        logging.getLogger("certtoken.test").warning("token \x1b[32mCRT1\x1b[0m issued", extra=extra)
    finally:
        correlation_id.reset(token)
    return stream.getvalue()


def test_auto_is_text_on_a_terminal_with_colour() -> None:
    line = _log(FakeTerminal(), "auto", serial="CRT1")
    assert not line.startswith("{")
    assert " api WARNING certtoken.test: token" in line
    assert "serial=CRT1" in line and "cid=cid-1" in line
    assert line.startswith("\x1b[33m")  # a warning in yellow, for people


def test_auto_is_json_without_colour_when_not_a_terminal() -> None:
    line = _log(io.StringIO(), "auto", serial="CRT1", color_message="\x1b[1mbold\x1b[0m")
    doc = json.loads(line)
    assert doc["level"] == "WARNING"
    assert doc["service"] == "api"
    assert doc["message"] == "token CRT1 issued"
    assert doc["serial"] == "CRT1"
    assert doc["correlation_id"] == "cid-1"
    assert "color_message" not in doc
    assert "\x1b" not in line and "\\u001b" not in line


def test_an_explicit_setting_wins_over_the_terminal() -> None:
    doc = json.loads(_log(FakeTerminal(), "json", nested={"a": "\x1b[31mred"}))
    assert doc["nested"] == {"a": "red"}
    text = _log(io.StringIO(), "text")
    assert " api WARNING certtoken.test: token" in text and not text.startswith("{")
    assert "\x1b[33m" not in text  # no colour where no terminal shows it


def test_no_colour_when_no_color_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[33m" not in _log(FakeTerminal(), "text")


def test_an_exception_in_json_stays_one_line() -> None:
    stream = io.StringIO()
    configure("ca_worker", "INFO", "json", stream)
    try:
        raise ValueError("\x1b[31mboom")
    except ValueError:
        logging.getLogger("x").exception("failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert "ValueError: boom" in doc["exc"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "auto"),
        ({"CERTTOKEN_LOG_FORMAT": "text"}, "text"),
        ({"CERTTOKEN_LOG_JSON": "true"}, "json"),
        ({"CERTTOKEN_LOG_JSON": "false"}, "text"),
        ({"CERTTOKEN_LOG_JSON": "false", "CERTTOKEN_LOG_FORMAT": "json"}, "json"),
    ],
)
def test_settings_keep_the_older_log_json_working(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for name in ("CERTTOKEN_LOG_FORMAT", "CERTTOKEN_LOG_JSON"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings().resolved_log_format == expected


def test_an_unknown_log_format_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTTOKEN_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="log_format"):
        Settings()
