"""CRLs and OCSP answers built from pure inputs, checked with cryptography."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.api.ocsp import CertStatus, _Signer, build_response, issuer_hashes
from services.ca_worker.ca_create import _build_root
from services.ca_worker.connectors.local import LocalConnector
from services.ca_worker.publication import (
    CRL_LIFETIME,
    RESPONDER_LIFETIME,
    Revoked,
    crl_builder,
    needs_crl,
    needs_responder,
    reason_flag,
)
from shared.db.models import CAPublication

PASS = b"unit-test-passphrase"


def local_ca(tmp_path: Path, key_type: str = "ec-p256") -> LocalConnector:
    key_pem, cert = _build_root(key_type, x509.Name.from_rfc4514_string("CN=Unit CA"), 30, PASS)
    (tmp_path / "cakey.pem").write_bytes(key_pem)
    (tmp_path / "cacert.pem").write_text(cert)
    return LocalConnector.load(
        "unit", {"cakey": "cakey.pem", "cacert": "cacert.pem"}, tmp_path, PASS
    )


def test_reason_flags() -> None:
    assert reason_flag("keyCompromise") is x509.ReasonFlags.key_compromise
    assert reason_flag("unspecified") is None
    assert reason_flag("nonsense") is None


def test_crl_lists_revoked_serials_with_reasons(tmp_path: Path) -> None:
    ca = local_ca(tmp_path)
    now = datetime.now(UTC).replace(microsecond=0)
    entries = [
        Revoked("1f", now, "keyCompromise"),
        Revoked("abc", now, "unspecified"),
    ]
    der = ca.sign_crl(crl_builder(entries, 7, now, now + CRL_LIFETIME))
    crl = x509.load_der_x509_crl(der)
    assert crl.is_signature_valid(ca.certificate.public_key())  # type: ignore[arg-type]
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    assert crl.issuer == ca.certificate.subject
    first = crl.get_revoked_certificate_by_serial_number(0x1F)
    assert first is not None
    assert first.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.key_compromise
    )
    second = crl.get_revoked_certificate_by_serial_number(0xABC)
    assert second is not None and len(second.extensions) == 0


def test_when_crl_and_responder_are_due() -> None:
    now = datetime.now(UTC)
    assert needs_crl(None, None, now) and needs_responder(None, now)
    fresh = CAPublication(
        crl_this_update=now,
        crl_next_update=now + CRL_LIFETIME,
        ocsp_not_after=now + RESPONDER_LIFETIME,
    )
    assert not needs_crl(fresh, None, now)
    assert not needs_crl(fresh, now - timedelta(seconds=1), now)
    assert needs_crl(fresh, now + timedelta(seconds=1), now)
    assert needs_crl(fresh, None, now + CRL_LIFETIME * 0.6)
    assert not needs_responder(fresh, now)
    assert needs_responder(fresh, now + RESPONDER_LIFETIME * 0.6)


def test_delegated_responder_signs_answers_about_the_cas_certificates(tmp_path: Path) -> None:
    ca = local_ca(tmp_path, "rsa-2048")
    now = datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    responder = ca.issue_responder(key.public_key(), now, now + RESPONDER_LIFETIME)
    eku = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    assert responder.extensions.get_extension_for_class(x509.OCSPNoCheck)
    assert responder.issuer == ca.certificate.subject
    assert responder.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "unit OCSP responder"
    )

    subject_key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string("CN=leaf"))
        .issuer_name(ca.certificate.subject)
        .public_key(subject_key.public_key())
        .serial_number(4242)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(subject_key, hashes.SHA256())
    )
    for algorithm in (hashes.SHA1(), hashes.SHA256()):
        request = ocsp.OCSPRequestBuilder().add_certificate(cert, ca.certificate, algorithm).build()
        assert issuer_hashes(ca.certificate, algorithm) == (
            request.issuer_name_hash,
            request.issuer_key_hash,
        )
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(cert, ca.certificate, hashes.SHA256())
        .add_extension(x509.OCSPNonce(b"0123456789abcdef"), critical=False)
        .build()
    )
    signer = _Signer("pem", responder, key, ca.certificate)
    revoked_at = now.replace(microsecond=0) - timedelta(hours=1)
    status = CertStatus(ocsp.OCSPCertStatus.REVOKED, revoked_at, x509.ReasonFlags.superseded)
    answer = ocsp.load_der_ocsp_response(build_response(request, signer, status, now))
    assert answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_reason == x509.ReasonFlags.superseded
    assert answer.serial_number == 4242
    assert answer.certificates == [responder]
    nonce = answer.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    assert nonce == b"0123456789abcdef"
    key.public_key().verify(
        answer.signature,
        answer.tbs_response_bytes,
        ec.ECDSA(hashes.SHA256()),
    )
    assert (
        answer.responder_key_hash
        == x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    )
