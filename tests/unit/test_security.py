"""Password hashes, access tokens, sealed secrets."""

from __future__ import annotations

import time

import jwt
import pytest

from shared.security import (
    ExpiredAccessToken,
    Identity,
    InvalidAccessToken,
    SecretBox,
    hash_password,
    issue_token,
    read_token,
    verify_password,
)


def test_password_hash_verifies_and_is_salted() -> None:
    first, second = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert first != second
    assert first.startswith("scrypt$")
    assert "s3cret-pass" not in first
    assert verify_password("s3cret-pass", first)
    assert not verify_password("s3cret-pasS", first)
    assert not verify_password("x", "garbage")


def test_access_token_round_trip_and_rejections() -> None:
    identity = Identity("alice", "user", "corp")
    token = issue_token(identity, "k1", 60)
    assert read_token(token, "k1") == identity
    with pytest.raises(InvalidAccessToken):
        read_token(token, "k2")
    # Its lifetime ended a second ago (exp is issue time plus lifetime; no waiting for it).
    expired = issue_token(identity, "k1", -1)
    with pytest.raises(InvalidAccessToken):
        read_token(expired, "k1")
    unsigned = jwt.encode(
        {"sub": "x", "role": "admin", "exp": 2**40, "iss": "certtoken"}, None, algorithm="none"
    )
    with pytest.raises(InvalidAccessToken):
        read_token(unsigned, "k1")


def test_a_token_read_before_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    identity = Identity("bob", "admin", "")
    token = issue_token(identity, "k1", 60)
    assert read_token(token, "k1") == identity
    assert read_token(token, "k1") == identity  # the second read comes from the cache
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(ExpiredAccessToken):
        read_token(token, "k1")


def test_secret_box_detects_tampering() -> None:
    box = SecretBox("key")
    sealed = box.seal(b"password")
    assert b"password" not in sealed.encode()
    assert box.open(sealed) == b"password"
    with pytest.raises(ValueError):
        SecretBox("other").open(sealed)
