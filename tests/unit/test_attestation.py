"""The attestation verifier: real YubiKey data and chains made here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from services.api.enrollment import check_attestation
from services.api.errors import ParameterError
from services.api.uploads import uploaded_certificate
from shared.attestation import (
    AttestationError,
    AttestationMode,
    load_trust_store,
    parse_certificates,
    verify_attestation,
)
from shared.config import Settings
from shared.domain import RolloutState
from shared.jobs import SignRequest
from shared.pki import parse_csr
from shared.token_events import init_event_data

FIXTURES = Path(__file__).parents[1] / "fixtures" / "attestation"
NOW = datetime.now(UTC)
DAY = timedelta(days=1)

_EC_KEYS = [ec.generate_private_key(ec.SECP256R1()) for _ in range(4)]
_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(
    subject: str,
    key: Any,
    issuer: str | None = None,
    issuer_key: Any = None,
    *,
    ca: bool | None = None,
    path_length: int | None = None,
    not_before: datetime = NOW - DAY,
    not_after: datetime = NOW + 365 * DAY,
    pss: bool = False,
    serial: int | None = None,
) -> x509.Certificate:
    """A certificate for *key*, self-signed unless an issuer is given."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer or subject))
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True
        )
    signer = issuer_key or key
    if pss:
        return builder.sign(
            signer,
            hashes.SHA256(),
            rsa_padding=padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH),
        )
    return builder.sign(signer, hashes.SHA256())


@dataclass
class Chain:
    root: x509.Certificate
    intermediate: x509.Certificate
    leaf: x509.Certificate
    leaf_key: Any


def make_chain(
    *, root_path_length: int | None = 1, intermediate_ca: bool = True, **leaf: Any
) -> Chain:
    """Root (pathlen 1), intermediate (pathlen 0), leaf: the shape of a YubiKey chain."""
    root_key, inter_key, leaf_key = _EC_KEYS[:3]
    root = make_cert("Test Root", root_key, ca=True, path_length=root_path_length)
    inter = make_cert(
        "Test Intermediate",
        inter_key,
        "Test Root",
        root_key,
        ca=intermediate_ca,
        path_length=0,
    )
    cert = make_cert("Test Leaf", leaf_key, "Test Intermediate", inter_key, **leaf)
    return Chain(root, inter, cert, leaf_key)


def yubikey() -> tuple[list[x509.Certificate], list[x509.Certificate], Any]:
    """The slot-9a attestation with its intermediate, the Yubico root, and the CSR's key."""
    chain = parse_certificates((FIXTURES / "yubico-chain.pem").read_text())
    roots = [c for c in chain if c.subject == c.issuer]
    intermediates = [c for c in chain if c.subject != c.issuer]
    leaf = parse_certificates((FIXTURES / "yubikey-slot9a-attestation.pem").read_text())
    csr = parse_csr((FIXTURES / "yubikey-slot9a.csr").read_text())
    return leaf + intermediates, roots, csr.public_key()


# --- the real YubiKey data ------------------------------------------------------------------


def test_yubikey_attestation_verifies_against_the_yubico_root() -> None:
    chain, roots, key = yubikey()
    attested = verify_attestation(chain, key, roots)
    assert attested.subject == "CN=YubiKey PIV Attestation 9a"
    assert attested.issuer == "CN=Yubico PIV Attestation"


def test_yubikey_unrelated_attestation_is_a_key_mismatch() -> None:
    _, roots, key = yubikey()
    unrelated = parse_certificates((FIXTURES / "unrelated-attestation.pem").read_text())
    with pytest.raises(AttestationError, match=r"^attestation: key mismatch"):
        verify_attestation(unrelated, key, roots)


def test_yubikey_chain_without_its_intermediate_is_untrusted() -> None:
    chain, roots, key = yubikey()
    with pytest.raises(AttestationError, match=r"^attestation: untrusted chain"):
        verify_attestation(chain[:1], key, roots)


def test_yubikey_chain_against_another_root_is_untrusted() -> None:
    chain, _, key = yubikey()
    other = make_chain().root
    with pytest.raises(AttestationError, match=r"^attestation: untrusted chain"):
        verify_attestation(chain, key, [other])
    with pytest.raises(AttestationError, match="no trusted attestation CA is configured"):
        verify_attestation(chain, key, [])


def test_yubikey_attestation_expires_in_2052() -> None:
    chain, roots, key = yubikey()
    with pytest.raises(AttestationError, match=r"^attestation: expired"):
        verify_attestation(chain, key, roots, now=datetime(2060, 1, 1, tzinfo=UTC))


def test_missing_attestation() -> None:
    _, roots, key = yubikey()
    with pytest.raises(AttestationError, match=r"^attestation: missing"):
        verify_attestation([], key, roots)


# --- chains made here -----------------------------------------------------------------------


def test_made_chain_verifies_with_the_intermediate_given_or_trusted() -> None:
    chain = make_chain()
    key = chain.leaf_key.public_key()
    assert verify_attestation([chain.leaf, chain.intermediate], key, [chain.root]).subject == (
        "CN=Test Leaf"
    )
    # An intermediate in the trust store is an anchor of its own.
    assert verify_attestation([chain.leaf], key, [chain.intermediate, chain.root])


def test_rsa_pss_signed_chain_verifies() -> None:
    root = make_cert("PSS Root", _RSA_KEY, ca=True, path_length=0, pss=True)
    leaf_key = _EC_KEYS[3]
    leaf = make_cert("PSS Leaf", leaf_key, "PSS Root", _RSA_KEY, pss=True)
    assert verify_attestation([leaf], leaf_key.public_key(), [root]).issuer == "CN=PSS Root"


def test_expired_leaf_and_not_yet_valid_leaf() -> None:
    expired = make_chain(not_before=NOW - 10 * DAY, not_after=NOW - DAY)
    with pytest.raises(AttestationError, match=r"^attestation: expired"):
        verify_attestation(
            [expired.leaf, expired.intermediate], expired.leaf_key.public_key(), [expired.root]
        )
    early = make_chain(not_before=NOW + DAY)
    with pytest.raises(AttestationError, match=r"^attestation: not yet valid"):
        verify_attestation(
            [early.leaf, early.intermediate], early.leaf_key.public_key(), [early.root]
        )


def test_expired_intermediate() -> None:
    chain = make_chain()
    root_key, inter_key = _EC_KEYS[:2]
    old = make_cert(
        "Test Intermediate",
        inter_key,
        "Test Root",
        root_key,
        ca=True,
        path_length=0,
        not_before=NOW - 10 * DAY,
        not_after=NOW - DAY,
    )
    with pytest.raises(AttestationError, match="expired: 'CN=Test Intermediate'"):
        verify_attestation([chain.leaf, old], chain.leaf_key.public_key(), [chain.root])


def test_root_path_length_zero_refuses_an_intermediate() -> None:
    chain = make_chain(root_path_length=0)
    with pytest.raises(AttestationError, match="allows 0 CA certificates below it, not 1"):
        verify_attestation(
            [chain.leaf, chain.intermediate], chain.leaf_key.public_key(), [chain.root]
        )


def test_intermediate_that_is_no_ca_cannot_sign() -> None:
    chain = make_chain(intermediate_ca=False)
    with pytest.raises(AttestationError, match="is not a CA certificate"):
        verify_attestation(
            [chain.leaf, chain.intermediate], chain.leaf_key.public_key(), [chain.root]
        )


def test_forged_issuer_name_fails_the_signature() -> None:
    chain = make_chain()
    forger = _EC_KEYS[3]
    leaf = make_cert("Test Leaf", chain.leaf_key, "Test Intermediate", forger)
    with pytest.raises(AttestationError, match="does not verify"):
        verify_attestation([leaf, chain.intermediate], chain.leaf_key.public_key(), [chain.root])


def test_parse_refuses_what_is_not_a_certificate() -> None:
    with pytest.raises(ValueError, match=r"^attestation: not a PEM-encoded X.509 certificate"):
        parse_certificates("hello")
    with pytest.raises(ValueError, match=r"^attestation: not a PEM"):
        parse_certificates((FIXTURES / "yubikey-slot9a.csr").read_text())


def test_trust_store_from_a_file_or_a_directory(tmp_path: Path) -> None:
    chain = make_chain()
    (tmp_path / "a.pem").write_text(_pem(chain.root))
    (tmp_path / "b.crt").write_text((FIXTURES / "yubico-chain.pem").read_text())
    (tmp_path / "notes.txt").write_text("not loaded")
    assert len(load_trust_store(tmp_path)) == 3
    assert len(load_trust_store(tmp_path / "a.pem")) == 1
    assert load_trust_store(None) == []


# --- the modes ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(AttestationMode))
def test_modes(tmp_path: Path, mode: AttestationMode) -> None:
    root = tmp_path / "root.pem"
    root.write_text(_pem(yubikey()[1][0]))
    settings = (mode, root)
    csr = parse_csr((FIXTURES / "yubikey-slot9a.csr").read_text())
    good = (FIXTURES / "yubikey-slot9a-attestation.pem").read_text() + (
        FIXTURES / "yubico-chain.pem"
    ).read_text()
    bad = (FIXTURES / "unrelated-attestation.pem").read_text()
    if mode == AttestationMode.IGNORE:
        assert check_attestation(*settings, "corp", csr, bad) == {"attestation_verified": False}
        assert check_attestation(*settings, "corp", csr, None) == {"attestation_verified": False}
        return
    assert check_attestation(*settings, "corp", csr, good) == {
        "attestation_verified": True,
        "attestation_subject": "CN=YubiKey PIV Attestation 9a",
        "attestation_issuer": "CN=Yubico PIV Attestation",
    }
    with pytest.raises(ParameterError, match="key mismatch"):
        check_attestation(*settings, "corp", csr, bad)
    if mode == AttestationMode.VERIFY:
        assert check_attestation(*settings, "corp", csr, "") == {"attestation_verified": False}
    else:
        with pytest.raises(ParameterError, match=r"^attestation: missing"):
            check_attestation(*settings, "corp", csr, "")
    unreadable = (mode, tmp_path / "nonexistent.pem")
    with pytest.raises(ParameterError, match="cannot be read"):
        check_attestation(*unreadable, "corp", csr, good)


# --- uploaded certificates ------------------------------------------------------------------


def test_uploaded_certificate_info_and_refusals() -> None:
    chain = make_chain()
    uploaded = uploaded_certificate(_pem(chain.leaf))
    info = uploaded.info
    assert uploaded.pem == _pem(chain.leaf)
    assert info["certificate_subject"] == "CN=Test Leaf"
    assert info["certificate_issuer"] == "CN=Test Intermediate"
    assert info["certificate_serial"] == format(chain.leaf.serial_number, "x")
    expired = make_chain(not_before=NOW - 10 * DAY, not_after=NOW - DAY).leaf
    with pytest.raises(ParameterError, match=r"^certificate: expired"):
        uploaded_certificate(_pem(expired))
    early = make_chain(not_before=NOW + DAY).leaf
    with pytest.raises(ParameterError, match=r"^certificate: not yet valid"):
        uploaded_certificate(_pem(early))
    with pytest.raises(ParameterError, match=r"^certificate: not a PEM"):
        uploaded_certificate("garbage")


def test_upload_event_fields_are_documented() -> None:
    doc = yaml.safe_load((Path(__file__).parents[2] / "docs" / "asyncapi.yaml").read_text())
    schema = doc["components"]["schemas"]["tokenEventData"]
    info = uploaded_certificate(_pem(make_chain().leaf)).info
    request = SignRequest("CRT0000000A", "alice", "corp", "", "", "", info=info)
    data = init_event_data(request, RolloutState.ENROLLED, request.info, "PEM")
    assert data["rollout_state"] == "enrolled" and data["certificate_subject"] == "CN=Test Leaf"
    assert set(schema["required"]) <= set(data) <= set(schema["properties"])


def test_an_empty_trust_path_setting_means_none(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path, attestation_ca_path="").attestation_ca_path is None


def test_a_crafted_bundle_cannot_make_the_search_explode() -> None:
    loop_key = _EC_KEYS[3]
    # Eight CA certificates of one name and key: each one signs every other one.
    loop = [make_cert("Loop", loop_key, "Loop", loop_key, ca=True, serial=n) for n in range(1, 9)]
    leaf = make_cert("Looped Leaf", _EC_KEYS[2], "Loop", loop_key)
    with pytest.raises(AttestationError, match="too many candidate issuers"):
        verify_attestation([leaf, *loop], _EC_KEYS[2].public_key(), [make_chain().root])
    with pytest.raises(AttestationError, match="more than 8 intermediate certificates"):
        verify_attestation([leaf, *loop, loop[0]], _EC_KEYS[2].public_key(), [make_chain().root])
