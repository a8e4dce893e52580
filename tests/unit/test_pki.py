"""shared.pki: CSR parsing and summaries, subjects, keys, certificates."""

from __future__ import annotations

import base64
import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from shared.pki import (
    KEY_TYPES,
    MAX_PEM_BYTES,
    CSRError,
    cert_pem,
    csr_summary,
    generate_private_key,
    load_certificate,
    parse_csr,
    parse_subject,
    serial_hex,
    signature_hash_for,
    weak_key_reason,
)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_csr(
    key: CertificateIssuerPrivateKeyTypes,
    subject: str = "CN=alice,O=Example",
    sans: list[x509.GeneralName] | None = None,
) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name.from_rfc4514_string(subject)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


def pem_of(csr: x509.CertificateSigningRequest) -> str:
    return csr.public_bytes(serialization.Encoding.PEM).decode()


# --- parse_csr --------------------------------------------------------------------------------


def test_parse_csr_accepts_pem_text_and_bytes(ec_key: ec.EllipticCurvePrivateKey) -> None:
    pem = pem_of(make_csr(ec_key))
    for given in (pem, f"\n\n  {pem}  \n", pem.encode()):
        csr = parse_csr(given)
        assert csr.subject.rfc4514_string() == "CN=alice,O=Example"
        assert csr.public_key() == ec_key.public_key()


@pytest.mark.parametrize(
    "garbage",
    ["", "   ", "hello world", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END", "@@@@"],
)
def test_parse_csr_rejects_garbage(garbage: str) -> None:
    with pytest.raises(CSRError) as info:
        parse_csr(garbage)
    assert str(info.value).startswith("request: ")


def test_parse_csr_garbage_message() -> None:
    with pytest.raises(CSRError, match=r"^request: not a PEM-encoded PKCS#10"):
        parse_csr(
            "-----BEGIN CERTIFICATE REQUEST-----\nnot base64!\n-----END CERTIFICATE REQUEST-----"
        )


def test_csr_error_is_a_value_error() -> None:
    assert issubclass(CSRError, ValueError)
    assert str(CSRError("bad", field="csr")) == "csr: bad"


def test_parse_csr_rejects_a_certificate(ec_key: ec.EllipticCurvePrivateKey) -> None:
    cert = _self_signed(ec_key)
    with pytest.raises(CSRError, match="not a PEM-encoded PKCS#10"):
        parse_csr(cert_pem(cert))


def test_parse_csr_rejects_a_broken_signature(rsa_key: rsa.RSAPrivateKey) -> None:
    der = bytearray(make_csr(rsa_key).public_bytes(serialization.Encoding.DER))
    # The signature BIT STRING ends the DER encoding: its last octet is signature data.
    der[-1] ^= 0x01
    body = base64.encodebytes(bytes(der)).decode()
    pem = f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"
    with pytest.raises(CSRError) as info:
        parse_csr(pem)
    assert str(info.value) == "request: the CSR signature does not verify"


def test_parse_csr_accepts_base64_without_headers(ec_key: ec.EllipticCurvePrivateKey) -> None:
    csr = make_csr(ec_key)
    lines = pem_of(csr).strip().splitlines()
    assert lines[0].startswith("-----BEGIN")
    assert lines[-1].startswith("-----END")
    multi_line = "\n".join(lines[1:-1])
    one_line = "".join(lines[1:-1])
    for body in (multi_line, one_line, f"  {one_line}\r\n"):
        assert parse_csr(body) == csr


def test_parse_csr_accepts_new_certificate_request_header(
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    pem = pem_of(make_csr(ec_key)).replace("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST")
    assert parse_csr(pem).subject.rfc4514_string() == "CN=alice,O=Example"


def test_parse_csr_limits_the_size() -> None:
    with pytest.raises(CSRError, match=r"^request: larger than 64 KiB$"):
        parse_csr("A" * (MAX_PEM_BYTES + 1))


# --- csr_summary ------------------------------------------------------------------------------


def test_csr_summary_ec_with_sans(ec_key: ec.EllipticCurvePrivateKey) -> None:
    sans: list[x509.GeneralName] = [
        x509.DNSName("alice.example.org"),
        x509.RFC822Name("alice@example.org"),
        x509.IPAddress(ipaddress.ip_address("192.0.2.7")),
        x509.UniformResourceIdentifier("https://example.org/alice"),
    ]
    summary = csr_summary(make_csr(ec_key, "CN=alice,O=Example,C=DE", sans))
    assert summary == {
        "subject": "CN=alice,O=Example,C=DE",
        "sans": [
            "DNS:alice.example.org",
            "email:alice@example.org",
            "IP:192.0.2.7",
            "URI:https://example.org/alice",
        ],
        "key_type": "ec",
        "key_size": 256,
        "curve": "secp256r1",
        "signature_hash": "sha256",
    }


def test_csr_summary_rsa_without_sans(rsa_key: rsa.RSAPrivateKey) -> None:
    summary = csr_summary(make_csr(rsa_key, "CN=bob"))
    assert summary["subject"] == "CN=bob"
    assert summary["sans"] == []
    assert (summary["key_type"], summary["key_size"], summary["curve"]) == ("rsa", 2048, None)
    assert summary["signature_hash"] == "sha256"


def test_csr_summary_ed25519() -> None:
    summary = csr_summary(make_csr(ed25519.Ed25519PrivateKey.generate(), "CN=carol"))
    assert summary["key_type"] == "ed25519"
    assert summary["key_size"] == 256
    assert summary["signature_hash"] is None


# --- parse_subject ----------------------------------------------------------------------------


def test_parse_subject_openssl_and_rfc4514_agree() -> None:
    openssl = parse_subject("/C=DE/O=Bar/CN=foo")
    rfc = parse_subject("CN=foo,O=Bar,C=DE")
    assert openssl == rfc
    # x509.Name keeps the most significant RDN first.
    assert [a.oid for a in openssl] == [
        NameOID.COUNTRY_NAME,
        NameOID.ORGANIZATION_NAME,
        NameOID.COMMON_NAME,
    ]
    assert openssl.rfc4514_string() == "CN=foo,O=Bar,C=DE"


def test_parse_subject_openssl_order_is_kept() -> None:
    name = parse_subject("/CN=foo/O=Bar/C=DE")
    assert [a.value for a in name] == ["foo", "Bar", "DE"]


def test_parse_subject_spaces_case_and_more_attributes() -> None:
    name = parse_subject(" cn = Alice Smith , emailAddress=alice@example.org, dc=example, DC=org ")
    assert name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Alice Smith"
    assert name.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)[0].value == "alice@example.org"
    assert [a.value for a in name.get_attributes_for_oid(NameOID.DOMAIN_COMPONENT)] == [
        "org",
        "example",
    ]


def test_parse_subject_escapes_and_multi_valued_rdns() -> None:
    assert parse_subject(r"/CN=a\/b/O=x").get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "a/b"
    )
    rfc = parse_subject(r"CN=Smith\, John+UID=js,O=caf\C3\A9")
    assert rfc.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Smith, John"
    assert rfc.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "café"
    assert len(rfc.rdns) == 2
    assert parse_subject("2.5.4.3=by-oid").rfc4514_string() == "CN=by-oid"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/CN=foo/FOO=bar", "subject: unknown attribute 'FOO'"),
        ("CN=foo,XYZ=1", "subject: unknown attribute 'XYZ'"),
        ("", "subject: empty"),
        ("/CN=", "subject: CN has an empty value"),
        ("CN=a,C=DEU", "subject: C: "),
        ("justtext", "is not of the form TYPE=value"),
    ],
)
def test_parse_subject_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_subject(text)


# --- keys and certificates --------------------------------------------------------------------


@pytest.mark.parametrize("key_type", [t for t in KEY_TYPES if t != "rsa-4096"])
def test_generate_private_key(key_type: str) -> None:
    key = generate_private_key(key_type)
    family, size = key_type.split("-")
    if family == "rsa":
        assert isinstance(key, rsa.RSAPrivateKey)
        assert key.key_size == int(size)
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert key.curve.name == {"p256": "secp256r1", "p384": "secp384r1"}[size]


def test_generate_private_key_unknown() -> None:
    with pytest.raises(ValueError, match="key_type: unknown 'dsa-1024'"):
        generate_private_key("dsa-1024")


def test_signature_hash_for() -> None:
    assert isinstance(signature_hash_for(generate_private_key("ec-p256")), hashes.SHA256)
    assert isinstance(signature_hash_for(generate_private_key("ec-p384")), hashes.SHA384)


def test_weak_key_reason(rsa_key: rsa.RSAPrivateKey) -> None:
    assert weak_key_reason(rsa_key.public_key()) is None
    assert weak_key_reason(ec.generate_private_key(ec.SECP256R1()).public_key()) is None
    weak_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert "1024 bits is too weak" in (weak_key_reason(weak_rsa.public_key()) or "")
    weak_ec = ec.generate_private_key(ec.SECP224R1())
    assert "secp224r1 is too weak" in (weak_key_reason(weak_ec.public_key()) or "")


def test_certificate_round_trip(ec_key: ec.EllipticCurvePrivateKey) -> None:
    cert = _self_signed(ec_key)
    pem = cert_pem(cert)
    assert pem.startswith("-----BEGIN CERTIFICATE-----\n")
    assert load_certificate(pem) == cert
    assert load_certificate(f"\n{pem}\n".encode()) == cert


def test_load_certificate_rejects_garbage(ec_key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(ValueError, match=r"^certificate: not a PEM-encoded X.509 certificate$"):
        load_certificate("nonsense")
    with pytest.raises(ValueError, match="certificate: not a PEM-encoded"):
        load_certificate(pem_of(make_csr(ec_key)))


def test_serial_hex() -> None:
    assert serial_hex(255) == "ff"
    assert serial_hex(0x0102) == "102"
    assert serial_hex(2**159 - 1) == "7" + "f" * 39


def _self_signed(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name.from_rfc4514_string("CN=self")
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
