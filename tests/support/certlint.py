"""Pytest plugin: every certificate certtoken issues in the run passes pkilint's RFC 5280 lint.

A test's certificates are read from its databases as its fixtures are torn down, after the
services that wrote them stopped: the SQLite files under its ``tmp_path`` (in-process stacks
and service processes alike) and its ``postgres_url`` database before that is dropped. What
counts is what certtoken made: certificates of tokens enrolled from a CSR or a generated key,
the local CAs' issued certificates, local CA certificates and OCSP responder certificates;
never an uploaded certificate. Each distinct certificate is linted once at the end of the run;
a finding of ERROR or worse fails the run. Under pytest-xdist each worker lints what its tests
issued and hands the verdict to the controller, which reports for the whole run.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections import Counter
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pkilint import loader  # type: ignore[import-untyped]
from pkilint.pkix import certificate, extension, name  # type: ignore[import-untyped]
from pkilint.validation import ValidationFindingSeverity  # type: ignore[import-untyped]
from sqlalchemy import pool, text
from sqlalchemy.ext.asyncio import create_async_engine

# (kind, query): each query yields PEM certificates certtoken made.
SOURCES = (
    # Uploaded tokens carry no request; enrolled ones keep their CSR (or generated CSR).
    ("end-entity", "SELECT certificate FROM token WHERE certificate <> '' AND request <> ''"),
    ("end-entity", "SELECT certificate FROM issued_certificate"),
    ("CA", "SELECT cacert FROM caconnector WHERE type = 'local' AND cacert <> ''"),
    ("OCSP responder", "SELECT ocsp_cert FROM ca_publication WHERE ocsp_cert <> ''"),
)
WORKER_KEY = "certtoken-certlint"
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True)
class Finding:
    """One problem the linter (or reading a certificate) found."""

    severity: str
    code: str
    where: str
    message: str


@dataclass
class Collector:
    """Distinct certificates seen in the run (DER to where it came from), and the verdict."""

    certificates: dict[bytes, str] = field(default_factory=dict)
    problems: list[Finding] = field(default_factory=list)
    # SHA-256 of each distinct certificate to its kind: what the count reports.
    linted: dict[str, str] = field(default_factory=dict)
    findings: list[tuple[Finding, str]] = field(default_factory=list)

    def add(self, kind: str, pem: str, origin: str) -> None:
        """Keep *pem* for linting, once; a PEM that is no certificate is a finding itself."""
        try:
            der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(
                serialization.Encoding.DER
            )
        except (ValueError, x509.InvalidVersion) as exc:
            self.problems.append(Finding("FATAL", "certlint.unparsable", origin, str(exc)))
            return
        if der not in self.certificates:
            self.certificates[der] = f"{kind} from {origin}"
            self.linted[hashlib.sha256(der).hexdigest()] = kind

    def harvest_sqlite(self, path: Path, nodeid: str) -> None:
        """Read the certificates of the SQLite database at *path*."""
        connection = sqlite3.connect(path, timeout=10)
        try:
            for kind, query in SOURCES:
                try:
                    rows = connection.execute(query).fetchall()
                except sqlite3.OperationalError as exc:
                    if "no such" in str(exc):  # a database before that migration
                        continue
                    raise
                for (pem,) in rows:
                    self.add(kind, pem, f"{nodeid} ({path.name})")
        finally:
            connection.close()

    def harvest_url(self, url: str, nodeid: str) -> None:
        """Read the certificates of the (PostgreSQL) database at *url*."""
        with ThreadPoolExecutor(max_workers=1) as executor:
            found = executor.submit(asyncio.run, _read_url(url)).result()
        for kind, pem in found:
            self.add(kind, pem, f"{nodeid} (database)")

    def lint(self) -> None:
        """Lint every distinct certificate; keep findings of ERROR and worse."""
        validator = _validator()
        document_loader = loader.RFC5280CertificateDocumentLoader()
        for der, origin in self.certificates.items():
            try:
                document = document_loader.load_der_document(der, origin)
            except ValueError as exc:
                self.findings.append((Finding("FATAL", "pkilint.decode", "", str(exc)), origin))
                continue
            for result in validator.validate(document.root):
                for described in result.finding_descriptions:
                    severity = described.finding.severity
                    if severity <= ValidationFindingSeverity.ERROR:
                        found = Finding(
                            severity.name,
                            described.finding.code,
                            str(result.node.path),
                            described.message or "",
                        )
                        self.findings.append((found, origin))

    def export(self) -> dict[str, Any]:
        """The verdict as plain data, for an xdist worker to hand to the controller."""
        return {
            "linted": self.linted,
            "findings": [[*astuple(found), origin] for found, origin in self.findings],
            "problems": [list(astuple(problem)) for problem in self.problems],
        }

    def merge(self, exported: dict[str, Any]) -> None:
        """Add a worker's verdict (what :meth:`export` gave)."""
        self.linted.update(exported["linted"])
        self.findings.extend((Finding(*row[:4]), row[4]) for row in exported["findings"])
        self.problems.extend(Finding(*row) for row in exported["problems"])

    def report(self) -> list[str]:
        """The lines to print: the count, then each distinct finding with a certificate."""
        counts = Counter(self.linted.values())
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
        total = len(self.linted)
        errors = len(self.findings) + len(self.problems)
        lines = [f"certlint: {total} certificates linted ({kinds or 'none'}), {errors} errors"]
        seen: Counter[Finding] = Counter(f for f, _ in self.findings)
        shown: set[Finding] = set()
        for found, origin in self.findings:
            if found not in shown:
                shown.add(found)
                lines.append(
                    f"  {found.severity} {found.code} at {found.where}: {found.message} "
                    f"({seen[found]} certificates, e.g. {origin})"
                )
        lines.extend(f"  {p.severity} {p.code} in {p.where}: {p.message}" for p in self.problems)
        return lines


async def _read_url(url: str) -> list[tuple[str, str]]:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    found: list[tuple[str, str]] = []
    try:
        async with engine.connect() as connection:
            for kind, query in SOURCES:
                rows = await connection.execute(text(query))
                found.extend((kind, pem) for (pem,) in rows)
    finally:
        await engine.dispose()
    return found


def _validator() -> Any:
    """pkilint's RFC 5280 certificate validator, as its ``lint_pkix_cert`` builds it."""
    return certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(
            name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS
        ),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )


def sqlite_files(directory: Path) -> Iterable[Path]:
    """The SQLite database files under *directory*."""
    for path in sorted(directory.rglob("*")):
        if path.suffix in _SQLITE_SUFFIXES and path.is_file():
            with path.open("rb") as fh:
                if fh.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC:
                    yield path


class CertLint:
    """The plugin: harvests at fixture teardown, lints and reports at the end of the run."""

    def __init__(self) -> None:
        self.collector = Collector()
        self._linted = False

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Generator[None, Any, Any]:
        """After ``tmp_path`` or ``postgres_url`` is set up, arrange to read it at teardown."""
        value = yield
        harvest: Callable[[], None] | None = None
        nodeid = request.node.nodeid
        if fixturedef.argname == "tmp_path":
            harvest = partial(self._harvest_directory, Path(value), nodeid)
        elif fixturedef.argname == "postgres_url":
            harvest = partial(self.collector.harvest_url, str(value), nodeid)
        if harvest is not None:
            # Added after the fixture's own teardown and before its dependents' teardowns,
            # so it runs once the services stopped and before the data is removed.
            request.addfinalizer(harvest)
        return value

    def _harvest_directory(self, directory: Path, nodeid: str) -> None:
        for path in sqlite_files(directory):
            self.collector.harvest_sqlite(path, nodeid)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Lint what the run issued; a finding of ERROR or worse fails the run."""
        if session.config.option.collectonly:
            return
        self.collector.lint()
        self._linted = True
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:  # an xdist worker: the controller reports
            workeroutput[WORKER_KEY] = self.collector.export()
        if (self.collector.findings or self.collector.problems) and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        """On the xdist controller: take in what a worker linted."""
        exported = getattr(node, "workeroutput", {}).get(WORKER_KEY)
        if exported is not None:
            self.collector.merge(exported)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Print the count of linted certificates and every distinct finding."""
        if not self._linted:
            return
        lines = self.collector.report()
        failed = bool(self.collector.findings or self.collector.problems)
        terminalreporter.section("certificate lint (pkilint, RFC 5280)", red=failed, bold=True)
        for line in lines:
            terminalreporter.line(line, red=failed and line.startswith("  "))


def pytest_configure(config: pytest.Config) -> None:
    """Register the plugin once per run."""
    if not config.pluginmanager.has_plugin("certtoken-certlint"):
        config.pluginmanager.register(CertLint(), "certtoken-certlint")
