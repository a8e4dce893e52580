"""The certificate lint plugin (tests/support/certlint.py) fails a run that issued a bad one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.certlint import Collector

ROOT = Path(__file__).resolve().parents[2]
_KEY = ec.generate_private_key(ec.SECP256R1())

INNER_TEST = """
import sqlite3, sys

def test_issues(tmp_path):
    db = sqlite3.connect(tmp_path / "certtoken.db")
    db.execute("CREATE TABLE token (certificate TEXT, request TEXT)")
    db.executemany("INSERT INTO token VALUES (?, ?)", [
        ({good!r}, "CSR"),
        ({bad!r}, "CSR"),
        ({bad!r}, "CSR"),  # the same certificate twice is linted once
        ({uploaded!r}, ""),  # uploaded: not certtoken's
        ("", "CSR"),  # not issued yet
    ])
    db.commit()
    db.close()
"""


def _cert(subject: list[x509.NameAttribute[str]]) -> str:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Lint CA")]))
        .public_key(_KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(_KEY.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(_KEY.public_key()), False)
    )
    return builder.sign(_KEY, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


GOOD = _cert([x509.NameAttribute(NameOID.COMMON_NAME, "alice")])
# RFC 5280 4.1.2.6: an e-mail address MUST be in the subjectAltName (pkilint: ERROR).
BAD = _cert(
    [
        x509.NameAttribute(NameOID.COMMON_NAME, "alice"),
        x509.NameAttribute(NameOID.EMAIL_ADDRESS, "alice@example.org"),
    ]
)


def test_a_run_that_issued_a_bad_certificate_fails_and_names_the_finding(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "conftest.py").write_text('pytest_plugins = ["tests.support.certlint"]\n')
    uploaded = _cert([x509.NameAttribute(NameOID.EMAIL_ADDRESS, "bob@example.org")])
    inner = INNER_TEST.format(good=GOOD, bad=BAD, uploaded=uploaded)
    (project / "test_inner.py").write_text(inner)
    # Only the plugin under test: autoloading schemathesis, hypothesis and others takes seconds.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    args = ["-p", "no:cacheprovider", f"--basetemp={tmp_path / 'inner'}", "-q"]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", *args, "test_inner.py"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        # The bad certificate is this test's input: the outer run must not lint it.
        shutil.rmtree(tmp_path / "inner", ignore_errors=True)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    assert "certlint: 2 certificates linted (2 end-entity), 1 errors" in done.stdout
    assert "ERROR pkix.subject_email_address_not_in_san" in done.stdout
    assert "test_inner.py::test_issues" in done.stdout


def test_only_errors_count_and_unparsable_certificates_are_findings() -> None:
    collector = Collector()
    collector.add("end-entity", GOOD, "here")
    collector.add("end-entity", GOOD, "there")
    collector.add("CA", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", "x")
    collector.lint()
    assert len(collector.certificates) == 1
    assert collector.findings == []
    assert [p.code for p in collector.problems] == ["certlint.unparsable"]
    assert collector.report()[0] == "certlint: 1 certificates linted (1 end-entity), 1 errors"
