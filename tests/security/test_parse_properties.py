"""Parsing CSRs and certificates: any input ends in the documented error (a 400), in time.

Inputs are arbitrary text and bytes, and valid PEMs mutated inside their DER: bits flipped,
bytes set, inserted, deleted, truncated, pieces concatenated, and oversized. CSRs are also
re-signed after the mutation so that what follows the signature check is reached too.
"""

from __future__ import annotations

import base64
import ipaddress
import textwrap
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.api.errors import ParameterError
from services.api.uploads import check_proof, uploaded_certificate
from shared.attestation import parse_certificates
from shared.pki import CSRError, certificate_id, csr_summary, name_text, parse_csr

T = TypeVar("T")
FIXTURES = Path(__file__).parents[1] / "fixtures" / "attestation"
# A parse of a few KiB takes microseconds; seconds mean a hang, whatever the machine's load.
HANG_SECONDS = 10
FAST = settings(
    max_examples=150,
    deadline=timedelta(seconds=2),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NOW = datetime.now(UTC)
_EC = ec.generate_private_key(ec.SECP256R1())
_ED = ed25519.Ed25519PrivateKey.generate()


def _bounded(
    call: Callable[[], T], documented: type[Exception] | tuple[type[Exception], ...]
) -> tuple[T | None, Exception | None]:
    """*call*'s result, or the *documented* error it raised; anything else propagates.

    AssertionError when *call* does not end within HANG_SECONDS.
    """
    outcome: list[tuple[T | None, BaseException | None]] = []

    def run() -> None:
        try:
            outcome.append((call(), None))
        except BaseException as exc:
            outcome.append((None, exc))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(HANG_SECONDS)
    assert outcome, f"no answer within {HANG_SECONDS} s: the parser hangs"
    value, error = outcome[0]
    if error is None:
        return value, None
    if isinstance(error, documented):
        return None, error
    raise error


# --- valid inputs to start from ---------------------------------------------------------------


def _names() -> list[x509.GeneralName]:
    return [
        x509.DNSName("www.example.org"),
        x509.RFC822Name("alice@example.org"),
        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
        x509.UniformResourceIdentifier("https://example.org/alice"),
        x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dir")])),
        x509.RegisteredID(ObjectIdentifier("1.2.3.4")),
        x509.OtherName(ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), b"\x0c\x05alice"),
    ]


def _subject() -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ex\u00e4mple"),
            x509.NameAttribute(NameOID.COMMON_NAME, "alice \u2603"),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "alice@example.org"),
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "example"),
        ]
    )


def _usage() -> x509.KeyUsage:
    return x509.KeyUsage(True, False, False, False, True, False, False, False, False)


def _csr(key: Any) -> x509.CertificateSigningRequest:
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_subject())
        .add_extension(x509.SubjectAlternativeName(_names()), critical=False)
        .add_extension(_usage(), critical=True)
        .add_extension(eku, critical=False)
        .add_attribute(x509.oid.AttributeOID.CHALLENGE_PASSWORD, b"secret")
    )
    return builder.sign(
        key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    )


def _certificate() -> x509.Certificate:
    key = _EC.public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(key)
    point = x509.DistributionPoint(
        [x509.UniformResourceIdentifier("http://example.org/ca.crl")], None, None, None
    )
    access = x509.AccessDescription(
        x509.oid.AuthorityInformationAccessOID.OCSP,
        x509.UniformResourceIdentifier("http://example.org/ocsp"),
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_subject())
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Some CA")]))
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(), critical=True)
        .add_extension(x509.SubjectAlternativeName(_names()), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key), critical=False)
        .add_extension(x509.CRLDistributionPoints([point]), critical=False)
        .add_extension(x509.AuthorityInformationAccess([access]), critical=False)
        .add_extension(
            x509.CertificatePolicies(
                [x509.PolicyInformation(ObjectIdentifier("2.5.29.32.0"), None)]
            ),
            critical=False,
        )
    )
    return builder.sign(_EC, hashes.SHA256())


def _der(item: x509.Certificate | x509.CertificateSigningRequest) -> bytes:
    return item.public_bytes(serialization.Encoding.DER)


CSRS = [
    _der(_csr(_EC)),
    _der(_csr(_ED)),
    _der(parse_csr((FIXTURES / "yubikey-slot9a.csr").read_text())),
]
CERTIFICATES = [
    _der(_certificate()),
    *(
        _der(c)
        for c in x509.load_pem_x509_certificates((FIXTURES / "yubico-chain.pem").read_bytes())
    ),
    _der(
        x509.load_pem_x509_certificate((FIXTURES / "yubikey-slot9a-attestation.pem").read_bytes())
    ),
]


def _pem(der: bytes, label: str) -> str:
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"


# --- DER mutations ----------------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """One of *seeds* with a few byte-level changes."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        change = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if change == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif change == "set":
            data[at] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0x81, 0x82, 0xFF]))
        elif change == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif change == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            del data[at:]
    return bytes(data)


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _sequence(*parts: bytes) -> bytes:
    content = b"".join(parts)
    return b"\x30" + _length(len(content)) + content


def _resigned(info: bytes) -> bytes:
    """A CSR whose (possibly mangled) CertificationRequestInfo is signed by _EC with SHA-256."""
    ecdsa_with_sha256 = _sequence(bytes.fromhex("06082a8648ce3d040302"))
    signature = b"\x00" + _EC.sign(info, ec.ECDSA(hashes.SHA256()))
    return _sequence(info, ecdsa_with_sha256, b"\x03" + _length(len(signature)) + signature)


def _info(csr_der: bytes) -> bytes:
    """The CertificationRequestInfo of a CSR signed by _EC (the first element inside)."""
    return x509.load_der_x509_csr(csr_der).tbs_certrequest_bytes


@st.composite
def resigned_csrs(draw: st.DrawFn) -> str:
    """A CSR of _EC whose content is mangled, then validly signed again."""
    info = draw(mutated([_info(CSRS[0])]))
    return _pem(_resigned(info), "CERTIFICATE REQUEST")


texts = st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
csr_inputs = st.one_of(
    texts,
    st.binary(max_size=300),
    mutated(CSRS).map(lambda d: _pem(d, "CERTIFICATE REQUEST")),
    mutated(CSRS).map(lambda d: base64.b64encode(d).decode()),  # privacyIDEA's bare base64
    resigned_csrs(),
)
certificate_inputs = st.one_of(
    texts,
    mutated(CERTIFICATES).map(lambda d: _pem(d, "CERTIFICATE")),
    st.lists(mutated(CERTIFICATES), min_size=2, max_size=4).map(
        lambda ders: "junk\n".join(_pem(d, "CERTIFICATE") for d in ders)
    ),
)


# --- properties -------------------------------------------------------------------------------


@FAST
@given(csr_inputs)
def test_parse_csr_raises_only_csr_errors(text: str | bytes) -> None:
    csr, error = _bounded(lambda: parse_csr(text), CSRError)
    if error is not None or csr is None:
        assert str(error).startswith("request: ")
        return
    # What the api reads off an accepted CSR must not fail either.
    summary = csr_summary(csr)
    assert summary["subject"] == name_text(csr.subject)


@FAST
@given(certificate_inputs)
def test_parse_certificates_raises_only_value_errors(text: str) -> None:
    certificates, error = _bounded(
        lambda: parse_certificates(text, field="certificate"), ValueError
    )
    if error is not None or certificates is None:
        assert str(error).startswith("certificate: ")
        return
    assert certificates
    # What the api and the attestation check read off a parsed certificate must not fail.
    for certificate in certificates:
        assert certificate.subject.rfc4514_string() is not None
        assert certificate.issuer.rfc4514_string() is not None


@FAST
@given(certificate_inputs)
def test_an_upload_is_a_token_or_a_400(text: str) -> None:
    uploaded, error = _bounded(lambda: uploaded_certificate(text), ParameterError)
    if error is not None or uploaded is None:
        assert str(error).startswith("certificate: ")
        return
    assert uploaded.identity == certificate_id(uploaded.certificate)
    assert uploaded.info["certificate_serial"]


@FAST
@given(csr_inputs)
def test_a_proof_of_possession_is_checked_or_a_400(text: str | bytes) -> None:
    certificate = x509.load_der_x509_certificate(CERTIFICATES[0])
    request = text.decode("latin-1") if isinstance(text, bytes) else text
    proof, error = _bounded(
        lambda: check_proof(certificate, request, required=True), ParameterError
    )
    if error is not None:
        assert str(error).startswith(("request: ", "certificate: "))
        return
    assert proof == {"key_possession_proven": True}


@settings(max_examples=10, deadline=timedelta(seconds=5), database=None)
@given(st.integers(64 * 1024 + 1, 4 * 1024 * 1024), st.sampled_from(["A", " ", "\n", "\u00e9"]))
def test_huge_inputs_are_refused_by_size(size: int, filler: str) -> None:
    huge = _pem(CERTIFICATES[0], "CERTIFICATE") + filler * size
    calls: list[Callable[[], object]] = [
        lambda: parse_csr(huge),
        lambda: parse_certificates(huge),
        lambda: uploaded_certificate(huge),
    ]
    for call in calls:
        _, error = _bounded(call, (ValueError, ParameterError))
        assert "larger than 64 KiB" in str(error)


def test_the_seeds_are_valid() -> None:
    for der in CSRS:
        parse_csr(_pem(der, "CERTIFICATE REQUEST"))
    resigned = _pem(_resigned(_info(CSRS[0])), "CERTIFICATE REQUEST")
    assert parse_csr(resigned).subject == _subject()
    assert uploaded_certificate(_pem(CERTIFICATES[0], "CERTIFICATE")).info
    assert len(parse_certificates("".join(_pem(d, "CERTIFICATE") for d in CERTIFICATES))) == 4
