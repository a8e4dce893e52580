"""CSRs and verification for tests, made with cryptography and checked with openssl."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# One key for all test CSRs: key generation is not what these tests measure.
_KEY = ec.generate_private_key(ec.SECP256R1())


def make_csr(common_name: str = "alice", key: Any = None) -> str:
    """A PEM CSR for *common_name*."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    csr = builder.sign(key or _KEY, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def openssl_csr(workdir: Path, common_name: str = "alice") -> str:
    """A CSR made by ``openssl req``, as an operator would make one."""
    key, csr = workdir / "client.key", workdir / "client.csr"
    subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(csr),
            "-subj",
            f"/CN={common_name}",
        ],
        check=True,
        capture_output=True,
    )
    return csr.read_text()


def openssl_verify(
    workdir: Path, cacert_pem: str, cert_pem: str
) -> subprocess.CompletedProcess[str]:
    """Run ``openssl verify -CAfile`` on *cert_pem*."""
    ca, cert = workdir / "verify-ca.pem", workdir / "verify-cert.pem"
    ca.write_text(cacert_pem)
    cert.write_text(cert_pem)
    return subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca), str(cert)], capture_output=True, text=True
    )


def broken_signature(csr_pem: str) -> str:
    """The same CSR with one bit of its signature flipped."""
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01
    import base64
    import textwrap

    body = "\n".join(textwrap.wrap(base64.b64encode(bytes(der)).decode(), 64))
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}\n-----END CERTIFICATE REQUEST-----\n"


def self_signed_pem(common_name: str = "test") -> str:
    """A self-signed end-entity certificate, PEM, for tests that need any X.509 v3 certificate."""
    import datetime

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(_KEY, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()
