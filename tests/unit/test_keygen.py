"""genkey's pure parts: key type choice, subject, key and CSR, PKCS#12, the process pool."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from services.api.errors import ParameterError
from services.api.genkey import choose_keytype
from services.ca_worker.keygen import NICENESS, KeygenRefused, KeyPool, make_key
from services.ca_worker.pkcs12 import build_pkcs12
from shared.pki import generate_private_key, parse_csr

CN = NameOID.COMMON_NAME.dotted_string
OU = NameOID.ORGANIZATIONAL_UNIT_NAME.dotted_string


@pytest.mark.parametrize(
    ("keytype", "keysize", "expected"),
    [
        (None, None, "rsa-2048"),
        ("ec-p384", None, "ec-p384"),
        ("EC-P256", None, "ec-p256"),
        (None, 3072, "rsa-3072"),
        (None, "4096", "rsa-4096"),
        (None, " 2048 ", "rsa-2048"),
        ("rsa", "3072", "rsa-3072"),
        ("rsa-3072", 3072, "rsa-3072"),
        (None, "", "rsa-2048"),
    ],
)
def test_keytype_from_keytype_and_keysize(
    keytype: str | None, keysize: int | str | None, expected: str
) -> None:
    assert choose_keytype(keytype, keysize) == expected


@pytest.mark.parametrize(
    ("keytype", "keysize", "message"),
    [
        (None, 1024, "keysize: RSA keys below 2048 bits are refused"),
        (None, "1024", "keysize: RSA keys below 2048 bits are refused"),
        (None, "big", "keysize: must be a number of bits"),
        (None, "2048.0", "keysize: must be a number of bits"),
        (None, True, "keysize: must be a number of bits"),
        (None, 2500, "keysize: 2500 bits is not offered"),
        ("rsa-2048", 4096, "keysize: 4096 bits disagrees with keytype 'rsa-2048'"),
        ("ec-p256", 2048, "keysize: 2048 bits disagrees with keytype 'ec-p256'"),
        ("dsa-1024", None, "keytype: unknown key type 'dsa-1024'"),
    ],
)
def test_unusable_keytype_or_keysize_is_a_400(
    keytype: str | None, keysize: int | str | None, message: str
) -> None:
    with pytest.raises(ParameterError) as caught:
        choose_keytype(keytype, keysize)
    assert caught.value.message.startswith(message), caught.value.message


@pytest.mark.parametrize(
    ("keytype", "key_class", "hash_name"),
    [
        ("ec-p256", ec.EllipticCurvePrivateKey, "sha256"),
        ("ec-p384", ec.EllipticCurvePrivateKey, "sha384"),
        ("rsa-2048", rsa.RSAPrivateKey, "sha256"),
    ],
)
def test_key_and_csr_match(keytype: str, key_class: type, hash_name: str) -> None:
    made = make_key(keytype, ((CN, "alice"), (OU, "corp")))
    key = serialization.load_pem_private_key(made.private_key_pem, password=None)
    assert isinstance(key, key_class)
    csr = parse_csr(made.csr_pem)
    assert csr.public_key() == key.public_key()
    assert csr.subject.rfc4514_string() == "OU=corp,CN=alice"
    assert csr.signature_hash_algorithm is not None
    assert csr.signature_hash_algorithm.name == hash_name
    with pytest.raises(KeygenRefused, match="keytype"):
        make_key("rsa-1024", ((CN, "alice"),))


def _certificate(key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    """A CA certificate and a certificate for *key* it signed, PEM."""
    ca_key = generate_private_key("ec-p256")
    now = datetime.now(UTC)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return ca.public_bytes(pem).decode(), cert.public_bytes(pem).decode()


def test_pkcs12_opens_with_its_password_only(tmp_path: Path) -> None:
    made = make_key("ec-p256", ((CN, "alice"),))
    key = serialization.load_pem_private_key(made.private_key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    ca_pem, cert_pem = _certificate(key)
    der = build_pkcs12(made.private_key_pem, b"s3cret PIN", cert_pem, (ca_pem, ""), "CRT0001")
    loaded = pkcs12.load_pkcs12(der, b"s3cret PIN")
    assert loaded.key is not None and loaded.key.public_key() == key.public_key()
    assert loaded.cert is not None and loaded.cert.friendly_name == b"CRT0001"
    assert [c.certificate.subject.rfc4514_string() for c in loaded.additional_certs] == [
        "CN=Test CA"
    ]
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(der, b"wrong")
    path = tmp_path / "t.p12"
    path.write_bytes(der)
    shown = subprocess.run(
        ["openssl", "pkcs12", "-info", "-nodes", "-in", str(path), "-passin", "pass:s3cret PIN"],
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0, shown.stderr
    assert "PBES2" in shown.stderr and "AES-256-CBC" in shown.stderr, shown.stderr
    assert "PRIVATE KEY" in shown.stdout
    with pytest.raises(ValueError, match="unencrypted"):
        build_pkcs12(made.private_key_pem, b"", cert_pem, (), "CRT0001")


async def test_pool_children_run_at_lower_priority_and_make_keys() -> None:
    pool = KeyPool(1)
    try:
        assert await pool.call(os.nice, 0) == min(19, os.nice(0) + NICENESS)
        if hasattr(os, "SCHED_IDLE"):
            assert await pool.call(os.sched_getscheduler, 0) == os.SCHED_IDLE
        made = await pool.make("ec-p256", ((CN, "bob"),))
        assert parse_csr(made.csr_pem).subject.rfc4514_string() == "CN=bob"
        with pytest.raises(KeygenRefused):
            await pool.make("nope", ((CN, "bob"),))
    finally:
        await pool.shutdown()
    await pool.shutdown()
