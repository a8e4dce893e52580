"""The DER writer the pkcs11 key store reassembles signed objects with."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509 import load_pem_x509_certificate

from services.ca_worker.keystores import der
from tests.support.pki import self_signed_pem


def test_integers_are_minimal_and_positive() -> None:
    assert der.integer(0) == b"\x02\x01\x00"
    assert der.integer(0x7F) == b"\x02\x01\x7f"
    assert der.integer(0x80) == b"\x02\x02\x00\x80"
    assert der.integer(0x0100) == b"\x02\x02\x01\x00"


def test_long_lengths() -> None:
    assert der.tlv(0x04, b"x" * 200)[:3] == b"\x04\x81\xc8"
    assert der.tlv(0x04, b"x" * 300)[:4] == b"\x04\x82\x01\x2c"


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1()])
def test_ecdsa_raw_signature_becomes_the_der_cryptography_verifies(
    curve: ec.EllipticCurve,
) -> None:
    key = ec.generate_private_key(curve)
    signature = key.sign(b"data", ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(signature)
    size = (curve.key_size + 7) // 8
    raw = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    assert der.ecdsa_signature(raw) == signature
    key.public_key().verify(der.ecdsa_signature(raw), b"data", ec.ECDSA(hashes.SHA256()))


def test_odd_ecdsa_signature_is_refused() -> None:
    with pytest.raises(der.DERError):
        der.ecdsa_signature(b"\x01\x02\x03")


def test_a_certificate_splits_and_reassembles_byte_for_byte() -> None:
    cert = load_pem_x509_certificate(self_signed_pem().encode())
    data = cert.public_bytes(serialization.Encoding.DER)
    tbs, algorithm, signature = der.elements(data)
    assert tbs == cert.tbs_certificate_bytes
    assert der.signed(tbs, algorithm, cert.signature) == data
    assert signature == der.bit_string(cert.signature)


def test_malformed_der_is_refused() -> None:
    with pytest.raises(der.DERError):
        der.elements(b"\x30\x05\x02\x01")
    with pytest.raises(der.DERError):
        der.elements(b"\x30\x00\x00")
    with pytest.raises(der.DERError):
        der.elements(b"\x04\x00")
