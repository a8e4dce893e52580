"""Numbers for things certtoken keys by name where privacyIDEA answers a row id."""

from __future__ import annotations

import zlib


def stable_id(name: str) -> int:
    """A positive number derived from *name* alone: the same in every process and release."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF or 1
