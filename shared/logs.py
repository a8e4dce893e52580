"""Log lines with the correlation id of the request or message being handled.

JSON lines for machines, readable lines for people: ``auto`` picks by whether stderr is a
terminal. JSON never carries terminal colour codes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal, TextIO

correlation_id: ContextVar[str] = ContextVar("correlation_id", default="")

LogFormat = Literal["auto", "json", "text"]

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
# uvicorn adds a coloured copy of its message to the record; the plain one is enough.
_DROPPED = {"color_message"}
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_LEVEL_COLOURS = {
    "DEBUG": "\x1b[2m",
    "WARNING": "\x1b[33m",
    "ERROR": "\x1b[31m",
    "CRITICAL": "\x1b[1;31m",
}
_RESET = "\x1b[0m"


def new_correlation_id() -> str:
    """A fresh correlation id."""
    return uuid.uuid4().hex


def without_colour(value: object) -> object:
    """*value* with terminal escape sequences removed from its text (nested ones too)."""
    if isinstance(value, str):
        return _ANSI.sub("", value)
    if isinstance(value, dict):
        return {k: without_colour(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_colour(v) for v in value]
    return value


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD and key not in _DROPPED and not key.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    """One JSON object a line; extra fields given to the logger are kept."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": correlation_id.get(),
        }
        doc.update(_extras(record))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(without_colour(doc), default=lambda v: without_colour(str(v)))


class TextFormatter(logging.Formatter):
    """Human-readable lines that still carry the correlation id and extra fields."""

    def __init__(self, fmt: str, *, colour: bool = False) -> None:
        super().__init__(fmt)
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = _extras(record)
        cid = correlation_id.get()
        if cid:
            extras["cid"] = cid
        fields = " ".join(f"{k}={v}" for k, v in extras.items())
        line = f"{base} [{fields}]" if fields else base
        colour = _LEVEL_COLOURS.get(record.levelname) if self.colour else None
        return f"{colour}{line}{_RESET}" if colour else line


def chosen_format(log_format: LogFormat | bool, stream: TextIO) -> Literal["json", "text"]:
    """``json`` or ``text`` for *stream*: ``auto`` is text on a terminal; True/False as before."""
    if log_format is True or log_format == "json":
        return "json"
    if log_format is False or log_format == "text":
        return "text"
    return "text" if _is_terminal(stream) else "json"


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def formatter_for(service: str, log_format: LogFormat | bool, stream: TextIO) -> logging.Formatter:
    """The formatter *log_format* means on *stream*; colour only for text on a terminal."""
    if chosen_format(log_format, stream) == "json":
        return JsonFormatter(service)
    colour = _is_terminal(stream) and not os.environ.get("NO_COLOR")
    return TextFormatter(
        f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s", colour=colour
    )


def configure(
    service: str,
    level: str = "INFO",
    log_format: LogFormat | bool = "auto",
    stream: TextIO | None = None,
) -> None:
    """Send every log record to *stream* (stderr) in the chosen format."""
    target = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(target)
    handler.setFormatter(formatter_for(service, log_format, target))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiormq").setLevel(logging.WARNING)
    logging.getLogger("aio_pika").setLevel(logging.WARNING)
