"""Signed answers (privacyIDEA's RSA-PSS scheme) and the access token's headers."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.api.auth import presented_token
from services.api.envelope import ok
from services.api.errors import InvalidToken, MissingToken
from services.api.signing import current_signer, load_signer, signed_text, signer_for, verify
from shared.config import Settings


def test_signed_text_is_the_sorted_body_without_its_signature() -> None:
    body = {"b": 1, "a": {"y": "é", "x": [1.5]}, "signature": "rsa_sha256_pss:00"}
    assert signed_text(body) == b'{"a": {"x": [1.5], "y": "\\u00e9"}, "b": 1}'


def test_answers_are_signed_as_a_client_reads_them(tmp_path: Path) -> None:
    signer = load_signer(tmp_path / "key.pem")
    public = serialization.load_pem_public_key(signer.public_pem)
    assert isinstance(public, rsa.RSAPublicKey)
    reset = current_signer.set(signer)
    try:
        # Integer keys become strings on the way: the signature covers what the client sees.
        rendered = ok({"count": 2, "by_id": {10: "x", 9: "y"}, "name": "Ünïcode"}).body
    finally:
        current_signer.reset(reset)
    body = json.loads(rendered)
    assert body["signature"].startswith("rsa_sha256_pss:")
    assert verify(public, body)
    body["result"]["value"]["count"] = 3
    assert not verify(public, body)
    assert not verify(public, {**body, "signature": "rsa_sha256:00"})
    assert "signature" not in json.loads(ok(1).body)


def test_the_key_is_made_once_owner_only_even_by_racing_processes(tmp_path: Path) -> None:
    path = tmp_path / "data" / "key.pem"
    with ThreadPoolExecutor(4) as pool:
        signers = list(pool.map(lambda _: load_signer(path), range(4)))
    assert len({s.public_pem for s in signers}) == 1
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["key.pem"]
    assert load_signer(path).public_pem == signers[0].public_pem


def test_signing_off_or_from_a_named_key_file(tmp_path: Path) -> None:
    assert signer_for(Settings(data_dir=tmp_path, response_signing=False)) is None
    named = tmp_path / "elsewhere.pem"
    signer = signer_for(Settings(data_dir=tmp_path / "data", response_signing_key_file=named))
    assert signer is not None and named.exists() and not (tmp_path / "data").exists()


def test_a_key_that_is_not_rsa_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ec.pem"
    from cryptography.hazmat.primitives.asymmetric import ec

    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ValueError, match="not an RSA private key"):
        load_signer(path)


def test_the_token_comes_from_either_header() -> None:
    assert presented_token("t1", "") == "t1"
    assert presented_token("", "Bearer t1") == "t1"
    assert presented_token("t1", "bearer  t1 ") == "t1"
    with pytest.raises(MissingToken):
        presented_token(" ", "")
    with pytest.raises(InvalidToken, match="PI-Authorization and Authorization"):
        presented_token("t1", "t2")
