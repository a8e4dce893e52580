"""The secret keyring: the current key seals, every key opens, files are followed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.config import Settings
from shared.keyring import current_key, keys_of, ring_text
from shared.security import SecretBox


def test_the_current_key_seals_and_older_keys_still_open() -> None:
    old = SecretBox("old-key")
    sealed_old = old.seal(b"secret")
    ring = SecretBox(ring_text(["new-key", "old-key"]))
    assert ring.open(sealed_old) == b"secret"
    assert not ring.is_current(sealed_old)
    sealed_new = ring.seal(b"secret")
    assert ring.is_current(sealed_new)
    assert SecretBox("new-key").open(sealed_new) == b"secret"
    with pytest.raises(ValueError, match="does not verify"):
        old.open(sealed_new)


def test_a_keyring_needs_a_key() -> None:
    assert keys_of(" a \n\n b\n") == ["a", "b"]
    assert current_key("a\nb") == "a"
    with pytest.raises(ValueError, match="empty"):
        keys_of("\n \n")


def test_a_box_given_the_settings_follows_the_keyring_file(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    box = SecretBox(lambda: settings.resolved_secret_key)
    first = settings.resolved_secret_key
    sealed = box.seal(b"x")
    path = settings.secret_key_path
    assert path is not None and path.read_text().strip() == first
    replacement = path.with_name("next")
    replacement.write_text(ring_text(["fresh", first]))
    os.replace(replacement, path)
    assert current_key(settings.resolved_secret_key) == "fresh"
    assert box.open(sealed) == b"x"
    assert SecretBox("fresh").open(box.seal(b"y")) == b"y"
