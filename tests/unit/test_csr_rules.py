"""A template's CSR policy: option validation, CSR and genkey rules, the ca_worker's precheck."""

from __future__ import annotations

import base64
import textwrap
from functools import cache
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from services.ca_worker.connectors.base import Denied, Template
from services.ca_worker.precheck import precheck
from shared.ca_templates import TemplateOptions, template_options
from shared.csr_rules import csr_violation, keytype_violation
from shared.identity import Owner
from shared.pki import CSRError, parse_csr

Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
STRICT = TemplateOptions(
    key_types=("rsa", "ec"),
    min_rsa_bits=3072,
    min_ec_bits=384,
    signature_hashes=("sha256", "sha384"),
    max_csr_bytes=4096,
)


@cache
def rsa_key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@cache
def ec_key(curve: str) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1() if curve == "p384" else ec.SECP256R1())


def build(
    key: Key, algorithm: hashes.HashAlgorithm | None = None, sans: int = 0, cn: str = "alice"
) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if sans:
        names = [x509.DNSName(f"host{i}.example.org") for i in range(sans)]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return builder.sign(key, None)
    return builder.sign(key, algorithm or hashes.SHA256())


def pem(csr: x509.CertificateSigningRequest) -> str:
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def size(csr: x509.CertificateSigningRequest) -> int:
    return len(pem(csr).encode())


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)])
    if n >= 0x80:
        length += n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + body


# DER of AlgorithmIdentifier OIDs (cryptography no longer signs with these hashes).
_SHA1_RSA = bytes.fromhex("06092a864886f70d010105")
_MD5_RSA = bytes.fromhex("06092a864886f70d010104")
_SHA1_ECDSA = bytes.fromhex("06072a8648ce3d0401")


def legacy_signed(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, algorithm: Any) -> str:
    """A CSR self-signed with SHA-1 or MD5, built by hand, as PEM."""
    tbs = build(key).tbs_certrequest_bytes
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(tbs, padding.PKCS1v15(), algorithm)
        oid = _SHA1_RSA if isinstance(algorithm, hashes.SHA1) else _MD5_RSA
        identifier = _tlv(0x30, oid + b"\x05\x00")
    else:
        signature = key.sign(tbs, ec.ECDSA(algorithm))
        identifier = _tlv(0x30, _SHA1_ECDSA)
    der = _tlv(0x30, tbs + identifier + _tlv(0x03, b"\x00" + signature))
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}\n-----END CERTIFICATE REQUEST-----\n"


# Template options.


def test_defaults_are_the_safe_ones() -> None:
    options = TemplateOptions()
    assert options.key_types == ("rsa", "ec")
    assert (options.min_rsa_bits, options.min_ec_bits) == (2048, 256)
    assert options.signature_hashes == ("sha256", "sha384", "sha512")
    assert options.max_csr_bytes == 16384
    template = Template()
    for name in ("key_types", "min_rsa_bits", "min_ec_bits", "signature_hashes", "max_csr_bytes"):
        assert getattr(template, name) == getattr(options, name), name


def test_options_may_be_raised_and_come_as_form_text() -> None:
    options = template_options(
        {
            "key_types": "RSA, ed25519,rsa",
            "min_rsa_bits": "4096",
            "min_ec_bits": "521",
            "signature_hashes": "sha512, SHA384",
            "max_csr_bytes": "65536",
        }
    )
    assert options.key_types == ("rsa", "ed25519")
    assert (options.min_rsa_bits, options.min_ec_bits) == (4096, 521)
    assert options.signature_hashes == ("sha512", "sha384")
    assert options.max_csr_bytes == 65536
    template = Template.from_options("strict", options)
    assert template.key_types == ("rsa", "ed25519")
    assert (template.min_rsa_bits, template.min_ec_bits, template.max_csr_bytes) == (
        4096,
        521,
        65536,
    )
    assert template.signature_hashes == ("sha512", "sha384")
    assert template_options(options.model_dump(mode="json")) == options


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"key_types": "rsa,dsa"}, "key_types: unknown key type dsa; known: rsa, ec, ed25519"),
        ({"key_types": []}, "key_types: at least one key type is required"),
        ({"key_types": " , "}, "key_types: at least one key type is required"),
        ({"min_rsa_bits": 1024}, "min_rsa_bits: "),
        ({"min_rsa_bits": "2047"}, "min_rsa_bits: "),
        ({"min_rsa_bits": "big"}, "min_rsa_bits: "),
        ({"min_ec_bits": 224}, "min_ec_bits: "),
        ({"min_ec_bits": 1024}, "min_ec_bits: "),
        ({"signature_hashes": "sha256,sha1"}, "signature_hashes: sha1 is not allowed"),
        ({"signature_hashes": ["MD5"]}, "signature_hashes: md5 is not allowed"),
        ({"signature_hashes": "whirlpool"}, "signature_hashes: unknown hash whirlpool; known:"),
        ({"signature_hashes": ""}, "signature_hashes: at least one hash is required"),
        ({"max_csr_bytes": 0}, "max_csr_bytes: "),
        ({"max_csr_bytes": 65537}, "max_csr_bytes: "),
    ],
)
def test_bad_options_name_the_option(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        template_options(options)
    assert str(raised.value).startswith(message), str(raised.value)


# The CSR rules.


def test_compliant_csrs_pass() -> None:
    for key in (rsa_key(3072), ec_key("p384")):
        for algorithm in (hashes.SHA256(), hashes.SHA384()):
            csr = build(key, algorithm)
            assert csr_violation(csr, size(csr), "strict", STRICT) is None
    for key in (rsa_key(2048), ec_key("p256")):
        csr = build(key, hashes.SHA512())
        assert csr_violation(csr, size(csr), "default", TemplateOptions()) is None


def test_rsa_key_below_min_rsa_bits() -> None:
    csr = build(rsa_key(2048))
    assert csr_violation(csr, size(csr), "strict", STRICT) == (
        "request: template 'strict' requires RSA keys of at least 3072 bits (min_rsa_bits); "
        "this CSR has 2048"
    )


def test_ec_curve_below_min_ec_bits() -> None:
    csr = build(ec_key("p256"))
    assert csr_violation(csr, size(csr), "strict", STRICT) == (
        "request: template 'strict' requires EC keys of at least 384 bits (min_ec_bits); "
        "this CSR has 256 (secp256r1)"
    )


def test_key_type_not_in_key_types() -> None:
    csr = build(ec_key("p384"))
    only_rsa = TemplateOptions(key_types=("rsa",))
    assert csr_violation(csr, size(csr), "x", only_rsa) == (
        "request: template 'x' does not allow ec keys (key_types; allowed: rsa)"
    )
    ed = build(ed25519.Ed25519PrivateKey.generate())
    assert csr_violation(ed, size(ed), "default", TemplateOptions()) == (
        "request: template 'default' does not allow ed25519 keys (key_types; allowed: rsa, ec)"
    )


def test_ed25519_has_no_hash_and_passes_when_its_key_type_is_allowed() -> None:
    ed = build(ed25519.Ed25519PrivateKey.generate())
    options = TemplateOptions(key_types=("ed25519",), signature_hashes=("sha512",))
    assert csr_violation(ed, size(ed), "ed", options) is None


def test_signature_hash_not_in_signature_hashes() -> None:
    csr = build(ec_key("p384"), hashes.SHA512())
    assert csr_violation(csr, size(csr), "strict", STRICT) == (
        "request: template 'strict' does not allow sha512 signatures "
        "(signature_hashes; allowed: sha256, sha384)"
    )
    sha224 = build(rsa_key(2048), hashes.SHA224())
    assert "does not allow sha224 signatures" in (
        csr_violation(sha224, size(sha224), "default", TemplateOptions()) or ""
    )


@pytest.mark.parametrize(
    ("key", "algorithm"),
    [("rsa", hashes.SHA1()), ("rsa", hashes.MD5()), ("ec", hashes.SHA1())],
)
def test_sha1_and_md5_signed_csrs_are_refused(key: str, algorithm: Any) -> None:
    signer = rsa_key(2048) if key == "rsa" else ec_key("p256")
    text = legacy_signed(signer, algorithm)
    csr = x509.load_pem_x509_csr(text.encode())
    # Even where the signature verifies, the rule refuses the hash.
    assert csr_violation(csr, len(text), "default", TemplateOptions()) == (
        f"request: template 'default' does not allow {algorithm.name} signatures "
        "(signature_hashes; allowed: sha256, sha384, sha512)"
    )
    # The OpenSSL bundled with cryptography does not verify such signatures at all.
    with pytest.raises(CSRError, match=r"^request: "):
        parse_csr(text)
    denied = precheck(text, Template(), OWNER)
    assert isinstance(denied, Denied) and denied.reason.startswith("request: ")


def test_csr_larger_than_max_csr_bytes() -> None:
    big = build(ec_key("p384"), sans=200)
    assert size(big) > 4096
    assert csr_violation(big, size(big), "strict", STRICT) == (
        f"request: template 'strict' allows at most 4096 bytes (max_csr_bytes); "
        f"this CSR has {size(big)}"
    )
    long_subject = build(ec_key("p256"), cn="a" * 64)
    exact = TemplateOptions(max_csr_bytes=size(long_subject))
    assert csr_violation(long_subject, size(long_subject), "x", exact) is None
    smaller = TemplateOptions(max_csr_bytes=size(long_subject) - 1)
    assert "(max_csr_bytes)" in (
        csr_violation(long_subject, size(long_subject), "x", smaller) or ""
    )


# Server-generated keys.


@pytest.mark.parametrize(
    ("keytype", "options", "expected"),
    [
        ("rsa-3072", STRICT, None),
        ("ec-p384", STRICT, None),
        ("rsa-4096", TemplateOptions(), None),
        ("ec-p256", TemplateOptions(), None),
        (
            "rsa-2048",
            STRICT,
            "keytype: template 'strict' requires RSA keys of at least 3072 bits (min_rsa_bits); "
            "rsa-2048 has 2048",
        ),
        (
            "ec-p256",
            STRICT,
            "keytype: template 'strict' requires EC keys of at least 384 bits (min_ec_bits); "
            "ec-p256 has 256",
        ),
        (
            "ec-p256",
            TemplateOptions(key_types=("rsa",)),
            "keytype: template 'x' does not allow ec keys (key_types; allowed: rsa)",
        ),
        (
            "ed25519",
            TemplateOptions(),
            "keytype: template 'x' does not allow ed25519 keys (key_types; allowed: rsa, ec)",
        ),
        ("dsa-1024", TemplateOptions(), "keytype: unknown key type 'dsa-1024'"),
    ],
)
def test_keytype_rules(keytype: str, options: TemplateOptions, expected: str | None) -> None:
    name = "strict" if options is STRICT else "x"
    found = keytype_violation(keytype, name, options)
    if expected is None:
        assert found is None
    else:
        assert found is not None and found.startswith(expected), found


# The ca_worker's precheck applies the same rules.

OWNER = Owner("alice", "corp")


def test_precheck_applies_the_template_rules() -> None:
    strict = Template.from_options("strict", STRICT)
    weak = pem(build(rsa_key(2048)))
    denied = precheck(weak, strict, OWNER)
    assert isinstance(denied, Denied)
    assert denied.reason.startswith("request: template 'strict' requires RSA keys")
    big = pem(build(ec_key("p384"), sans=200))
    denied = precheck(big, strict, OWNER)
    assert isinstance(denied, Denied) and "(max_csr_bytes)" in denied.reason
    assert precheck(pem(build(ec_key("p384"))), strict, OWNER) is None
    assert precheck(pem(build(ec_key("p256"))), Template(), OWNER) is None
