"""The checks of `ca install` and `ca import`, the chain's storage form and the public URL setting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.ca_worker.ca_install import Checked, InstallError, check_ca_certificate
from shared.ca_material import chain_pems, not_ready_reason, public_urls
from shared.config import public_base_url
from shared.pki import cert_pem

NOW = datetime(2026, 6, 1, tzinfo=UTC)
PKI = dict[str, tuple[x509.Certificate, ec.EllipticCurvePrivateKey]]


def _usage(cert_sign: bool = True, crl_sign: bool = True) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def make(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    *,
    ca: bool = True,
    usage: x509.KeyUsage | None = None,
    days: tuple[int, int] = (-1, 30),
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer_name, signer = (issuer[0].subject, issuer[1]) if issuer else (subject, key)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + timedelta(days=days[0]))
        .not_valid_after(NOW + timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(usage or _usage(), critical=True)
        .sign(signer, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def pki() -> PKI:
    keys = {name: ec.generate_private_key(ec.SECP256R1()) for name in ("root", "mid", "ca")}
    root = make("Root", keys["root"])
    mid = make("Mid", keys["mid"], (root, keys["root"]))
    ca = make("CA", keys["ca"], (mid, keys["mid"]))
    return {"root": (root, keys["root"]), "mid": (mid, keys["mid"]), "ca": (ca, keys["ca"])}


def test_the_path_goes_up_to_the_root_in_any_order(pki: PKI) -> None:
    ca, key = pki["ca"]
    checked = check_ca_certificate(ca, key.public_key(), [pki["root"][0], pki["mid"][0]], NOW)
    assert checked.chain == (pki["mid"][0], pki["root"][0])
    assert chain_pems({"chain": checked.chain_pem}) == tuple(cert_pem(c) for c in checked.chain)
    # A root adopted as it is needs no chain.
    root, root_key = pki["root"]
    assert check_ca_certificate(root, root_key.public_key(), [], NOW) == Checked(root, ())


def test_refusals(pki: PKI) -> None:
    ca, key = pki["ca"]
    root, mid = pki["root"][0], pki["mid"][0]
    other = ec.generate_private_key(ec.SECP256R1())
    cases = [
        (ca, other.public_key(), [mid, root], NOW, "not the CA's key"),
        (ca, key.public_key(), [root], NOW, "no certificate in the chain issued it"),
        (ca, key.public_key(), [mid], NOW, "no certificate in the chain issued 'CN=Mid'"),
        (ca, key.public_key(), [mid, root], NOW + timedelta(days=60), "is not valid now"),
        (make("CA", key, pki["mid"], ca=False), key.public_key(), [mid, root], NOW, "not a CA"),
        (
            make("CA", key, pki["mid"], usage=_usage(crl_sign=False)),
            key.public_key(),
            [mid, root],
            NOW,
            "lacks cRLSign",
        ),
    ]
    for cert, public_key, chain, when, message in cases:
        with pytest.raises(InstallError) as refused:
            check_ca_certificate(cert, public_key, chain, when)
        assert message in str(refused.value), message
    # An intermediate that may not sign certificates breaks the chain.
    weak_mid = make("Mid", pki["mid"][1], pki["root"], usage=_usage(cert_sign=False))
    with pytest.raises(InstallError, match="'CN=Mid' may not sign certificates"):
        check_ca_certificate(ca, key.public_key(), [weak_mid, root], NOW)


def test_readiness_and_public_urls() -> None:
    assert not_ready_reason("x", {"cakey": "k"}) is None
    assert not_ready_reason("x", {"awaiting_install": True}) == (
        "CA connector x is not ready (its certificate is not installed: certtoken ca install)"
    )
    assert public_urls("", "x") is None
    assert public_urls("https://pki.example.org/base", "x") == {
        "crl": "https://pki.example.org/base/ca/x/crl",
        "ocsp": "https://pki.example.org/base/ca/x/ocsp",
        "ca_issuers": "https://pki.example.org/base/ca/x/cacert/1?format=der",
    }


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("", ""),
        ("  ", ""),
        ("https://pki.example.org/", "https://pki.example.org"),
        ("http://127.0.0.1:8000/pki", "http://127.0.0.1:8000/pki"),
    ],
)
def test_public_url_accepted(given: str, expected: str) -> None:
    assert public_base_url(given) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("ftp://pki.example.org", "http:// or https://"),
        ("pki.example.org", "http:// or https://"),
        ("https://pki.example.org/?x=1", "no query or fragment"),
        ("https://pki.example.org/#top", "no query or fragment"),
        ("https://user:pw@pki.example.org", "user name or password"),
        ("https://pki.example.org/a b", "ASCII without spaces"),
        ("https://pki.exämple.org", "ASCII without spaces"),
    ],
)
def test_public_url_refused(given: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        public_base_url(given)
