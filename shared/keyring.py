"""The secret keyring: the secret key file holds one key per line, the current one first.

Lines after the first are older keys, still accepted for opening sealed secrets while
``certtoken secrets rotate`` re-seals them under the current key; a file of one line (every
file written before keyrings existed) is a keyring of one key. Processes re-read the file
when it changes (its inode, size or modification time), so a rotation reaches running
services without a restart where they see the file itself (not a copy of it).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

_cache: dict[Path, tuple[tuple[int, int, int], str]] = {}
_lock = threading.Lock()


def keys_of(text: str) -> list[str]:
    """The keys of a keyring's *text*, the current one first; ValueError when there is none."""
    keys = [line.strip() for line in text.splitlines() if line.strip()]
    if not keys:
        raise ValueError("the secret key is empty")
    return keys


def current_key(text: str) -> str:
    """The key that seals and signs: the keyring's first."""
    return keys_of(text)[0]


def ring_text(keys: list[str]) -> str:
    """The file content of a keyring of *keys* (current first)."""
    return "".join(f"{key}\n" for key in keys)


def read_keyring(path: Path) -> str:
    """The keyring in *path*, read again only when the file changed since the last read."""
    info = os.stat(path)
    signature = (info.st_ino, info.st_size, info.st_mtime_ns)
    cached = _cache.get(path)
    if cached is not None and cached[0] == signature:
        return cached[1]
    text = path.read_text()
    keys_of(text)
    with _lock:
        _cache[path] = (signature, text)
    return text
