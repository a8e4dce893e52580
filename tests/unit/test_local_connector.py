"""The local CA: creation with create_local_ca and signing with LocalConnector."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from services.ca_worker.ca_create import CAExistsError, create_local_ca
from services.ca_worker.connectors.base import Denied, Issued, PermanentCAError, Template
from services.ca_worker.connectors.local import LocalConnector
from shared.config import Settings
from shared.db.models import Base, CAConnector
from shared.db.session import Database
from shared.identity import Owner
from shared.pki import KEY_TYPES, serial_hex

PASSPHRASE = "correct horse battery staple"
OPENSSL = "/usr/bin/openssl"


@dataclass
class Env:
    settings: Settings
    db: Database
    tmp: Path


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    settings = Settings(data_dir=tmp_path / "data", ca_passphrase=PASSPHRASE)
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'test.db'}")
    async with db.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield Env(settings, db, tmp_path)
    await db.dispose()


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


async def create_and_load(env: Env, name: str = "testca", **kwargs: object) -> LocalConnector:
    row = await create_local_ca(env.settings, env.db, name, **kwargs)  # type: ignore[arg-type]
    return LocalConnector.load(
        row.name, row.options, env.settings.data_dir, env.settings.resolved_ca_passphrase
    )


def make_csr(
    key: CertificateIssuerPrivateKeyTypes,
    subject: str = "CN=alice,O=Example",
    sans: list[x509.GeneralName] | None = None,
) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name.from_rfc4514_string(subject)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode()


ALICE = Owner("alice", "corp", "alice@example.org")


async def issue(
    connector: LocalConnector, csr: str, template: Template | None = None, owner: Owner = ALICE
) -> Issued:
    result = await connector.sign(csr, template or Template(), owner)
    assert isinstance(result, Issued), result
    return result


def ext(
    cert: x509.Certificate, kind: type[x509.ExtensionType]
) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(kind)


def openssl_verify(tmp: Path, ca_pem: str, cert_pem: str, *options: str) -> None:
    ca_file, cert_file = tmp / "verify-ca.pem", tmp / "verify-cert.pem"
    ca_file.write_text(ca_pem)
    cert_file.write_text(cert_pem)
    done = subprocess.run(
        [OPENSSL, "verify", "-x509_strict", *options, "-CAfile", str(ca_file), str(cert_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == f"{cert_file}: OK"


# --- create_local_ca --------------------------------------------------------------------------


async def test_create_writes_an_encrypted_key_and_a_root_certificate(env: Env) -> None:
    row = await create_local_ca(env.settings, env.db, "testca")
    assert row.type == "local"
    assert row.options == {"cakey": "ca/testca/cakey.pem", "cacert": "ca/testca/cacert.pem"}

    ca_dir = env.settings.data_dir / "ca" / "testca"
    key_file, cert_file = ca_dir / "cakey.pem", ca_dir / "cacert.pem"
    assert ca_dir.stat().st_mode & 0o777 == 0o700
    assert key_file.stat().st_mode & 0o777 == 0o600
    key_bytes = key_file.read_bytes()
    assert key_bytes.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(TypeError, match="private key is encrypted"):
        serialization.load_pem_private_key(key_bytes, password=None)
    with pytest.raises(ValueError):
        serialization.load_pem_private_key(key_bytes, password=b"not the passphrase")
    key = serialization.load_pem_private_key(key_bytes, password=PASSPHRASE.encode())
    assert PASSPHRASE.encode() not in key_bytes

    assert cert_file.read_text() == row.cacert
    cert = x509.load_pem_x509_certificate(row.cacert.encode())
    assert cert.public_key() == key.public_key()
    assert cert.subject.rfc4514_string() == "CN=testca"
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    assert cert.serial_number.bit_length() >= 64
    basic = ext(cert, x509.BasicConstraints)
    assert basic.critical
    assert basic.value == x509.BasicConstraints(ca=True, path_length=0)
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical
    assert isinstance(usage.value, x509.KeyUsage)
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert usage.value.digital_signature
    ski = ext(cert, x509.SubjectKeyIdentifier).value
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    assert isinstance(ski, x509.SubjectKeyIdentifier)
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert aki.key_identifier == ski.digest
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=3650) <= lifetime <= timedelta(days=3650, minutes=6)

    async with env.db.read() as session:
        stored = (await session.execute(select(CAConnector))).scalars().all()
    assert [(r.name, r.type, r.cacert) for r in stored] == [("testca", "local", row.cacert)]


async def test_create_with_subject_and_days(env: Env) -> None:
    row = await create_local_ca(
        env.settings, env.db, "corp", subject="/C=DE/O=Example/CN=Example Root", days=10
    )
    cert = x509.load_pem_x509_certificate(row.cacert.encode())
    assert cert.subject.rfc4514_string() == "CN=Example Root,O=Example,C=DE"
    assert cert.not_valid_after_utc - datetime.now(UTC) < timedelta(days=10, seconds=5)


async def test_create_twice_raises_and_keeps_the_files(env: Env) -> None:
    await create_local_ca(env.settings, env.db, "testca")
    ca_dir = env.settings.data_dir / "ca" / "testca"
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in ca_dir.iterdir()}

    with pytest.raises(CAExistsError, match="'testca' already exists"):
        await create_local_ca(env.settings, env.db, "testca", key_type="rsa-2048")

    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in ca_dir.iterdir()}
    assert after == before


async def test_create_refuses_an_existing_directory(env: Env) -> None:
    ca_dir = env.settings.data_dir / "ca" / "leftover"
    ca_dir.mkdir(parents=True)
    (ca_dir / "cakey.pem").write_text("someone else's key")

    with pytest.raises(CAExistsError, match="directory"):
        await create_local_ca(env.settings, env.db, "leftover")

    assert (ca_dir / "cakey.pem").read_text() == "someone else's key"
    assert sorted(p.name for p in ca_dir.iterdir()) == ["cakey.pem"]
    async with env.db.read() as session:
        assert await session.get(CAConnector, "leftover") is None


async def test_create_removes_its_files_when_the_insert_fails(env: Env) -> None:
    async with env.db.engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE TRIGGER block_ca BEFORE INSERT ON caconnector "
                "BEGIN INSERT INTO no_such_table VALUES (1); END"
            )
        )
    with pytest.raises(OperationalError):
        await create_local_ca(env.settings, env.db, "testca")
    assert not (env.settings.data_dir / "ca" / "testca").exists()

    async with env.db.engine.begin() as conn:
        await conn.execute(text("DROP TRIGGER block_ca"))
    await create_local_ca(env.settings, env.db, "testca")
    assert (env.settings.data_dir / "ca" / "testca" / "cakey.pem").exists()


@pytest.mark.parametrize("name", ["", "-ca", ".ca", "a/b", "../up", "a b", "x" * 64, "ca\n"])
async def test_create_rejects_bad_names(env: Env, name: str) -> None:
    with pytest.raises(ValueError, match=r"name: .* is not a valid CA name"):
        await create_local_ca(env.settings, env.db, name)
    assert not (env.settings.data_dir / "ca").exists()


async def test_create_rejects_unknown_key_type_and_bad_subject(env: Env) -> None:
    with pytest.raises(ValueError, match="key_type: unknown 'rsa-1024'"):
        await create_local_ca(env.settings, env.db, "ca1", key_type="rsa-1024")
    with pytest.raises(ValueError, match="subject: unknown attribute 'FOO'"):
        await create_local_ca(env.settings, env.db, "ca1", subject="/FOO=bar")
    assert not (env.settings.data_dir / "ca" / "ca1").exists()


@pytest.mark.parametrize("key_type", KEY_TYPES)
async def test_every_key_type_creates_a_working_ca(
    env: Env, key_type: str, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    connector = await create_and_load(env, key_type=key_type)
    ca = x509.load_pem_x509_certificate(connector.ca_certificate().encode())
    family, size = key_type.split("-")
    ca_key = ca.public_key()
    if family == "rsa":
        assert isinstance(ca_key, rsa.RSAPublicKey)
        assert ca_key.key_size == int(size)
    else:
        assert isinstance(ca_key, ec.EllipticCurvePublicKey)
        assert ca_key.curve.key_size == int(size[1:])
    expected_hash = "sha384" if key_type == "ec-p384" else "sha256"
    assert ca.signature_hash_algorithm is not None
    assert ca.signature_hash_algorithm.name == expected_hash

    issued = await issue(connector, make_csr(ec_key))
    cert = x509.load_pem_x509_certificate(issued.certificate.encode())
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == expected_hash
    openssl_verify(env.tmp, connector.ca_certificate(), issued.certificate)


# --- LocalConnector.load ----------------------------------------------------------------------


async def test_load_with_a_wrong_passphrase(env: Env) -> None:
    row = await create_local_ca(env.settings, env.db, "testca")
    wrong = b"Tr0ub4dor&3-wrong"
    with pytest.raises(PermanentCAError) as info:
        LocalConnector.load("testca", row.options, env.settings.data_dir, wrong)
    message = str(info.value)
    assert "cannot decrypt the CA key" in message
    assert "wrong CA passphrase" in message
    assert wrong.decode() not in message
    assert PASSPHRASE not in message
    assert info.value.__cause__ is None


async def test_load_refuses_an_unencrypted_key_and_missing_files(env: Env) -> None:
    row = await create_local_ca(env.settings, env.db, "testca")
    key_path = env.settings.data_dir / "ca" / "testca" / "cakey.pem"
    key = serialization.load_pem_private_key(key_path.read_bytes(), PASSPHRASE.encode())
    plain = env.tmp / "plain.pem"
    plain.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    options = {"cakey": str(plain), "cacert": row.options["cacert"]}
    with pytest.raises(PermanentCAError, match="is not encrypted"):
        LocalConnector.load("testca", options, env.settings.data_dir, PASSPHRASE.encode())
    with pytest.raises(PermanentCAError, match="cannot read"):
        LocalConnector.load(
            "testca", {"cakey": "ca/nope.pem", "cacert": "x"}, env.settings.data_dir, b"p"
        )
    with pytest.raises(PermanentCAError, match="option 'cacert' is required"):
        LocalConnector.load("testca", {"cakey": "x"}, env.settings.data_dir, b"p")


async def test_load_accepts_absolute_paths(env: Env) -> None:
    await create_local_ca(env.settings, env.db, "testca")
    ca_dir = (env.settings.data_dir / "ca" / "testca").resolve()
    options = {"cakey": str(ca_dir / "cakey.pem"), "cacert": str(ca_dir / "cacert.pem")}
    connector = LocalConnector.load("testca", options, Path("/nonexistent"), PASSPHRASE.encode())
    assert connector.name == "testca"
    assert connector.ca_certificate() == (ca_dir / "cacert.pem").read_text()


# --- LocalConnector.sign ----------------------------------------------------------------------


async def test_sign_ec_csr(env: Env, ec_key: ec.EllipticCurvePrivateKey) -> None:
    connector = await create_and_load(env)
    ca = x509.load_pem_x509_certificate(connector.ca_certificate().encode())
    sans: list[x509.GeneralName] = [
        x509.RFC822Name("alice@example.org"),
        x509.DNSName("alice.example.org"),
    ]
    before = datetime.now(UTC).replace(microsecond=0)
    in_zone = Template(sans={"email": ("owner",), "DNS": ("*.example.org",)})
    issued = await issue(connector, make_csr(ec_key, "CN=alice,O=Example", sans), in_zone)
    cert = x509.load_pem_x509_certificate(issued.certificate.encode())

    # The subject is built from the owner: the CSR's O=Example is not certified.
    assert cert.subject.rfc4514_string() == "CN=alice" == issued.subject
    assert cert.issuer == ca.subject
    assert cert.public_key() == ec_key.public_key()
    cert.verify_directly_issued_by(ca)
    assert issued.serial_number == serial_hex(cert.serial_number)
    assert issued.chain == (connector.ca_certificate(),)
    assert issued.not_before == cert.not_valid_before_utc
    assert issued.not_after == cert.not_valid_after_utc
    assert before - timedelta(minutes=5, seconds=1) <= cert.not_valid_before_utc <= before
    assert cert.not_valid_after_utc - before - timedelta(days=365) < timedelta(seconds=5)

    basic = ext(cert, x509.BasicConstraints)
    assert basic.critical
    assert basic.value == x509.BasicConstraints(ca=False, path_length=None)
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical
    assert isinstance(usage.value, x509.KeyUsage)
    assert usage.value.digital_signature
    # An EC key cannot encipher (RFC 5480): the template's keyEncipherment is dropped.
    assert not usage.value.key_encipherment
    assert not usage.value.key_cert_sign
    assert not usage.value.crl_sign
    eku = ext(cert, x509.ExtendedKeyUsage)
    assert not eku.critical
    assert list(eku.value) == [ExtendedKeyUsageOID.CLIENT_AUTH]  # type: ignore[call-overload]
    ski = ext(cert, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(ec_key.public_key())
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    ca_ski = ext(ca, x509.SubjectKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert isinstance(ca_ski, x509.SubjectKeyIdentifier)
    assert aki.key_identifier == ca_ski.digest
    san = ext(cert, x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value == x509.SubjectAlternativeName(sans)

    openssl_verify(env.tmp, connector.ca_certificate(), issued.certificate, "-purpose", "sslclient")


async def test_sign_rsa_csr(env: Env, rsa_key: rsa.RSAPrivateKey) -> None:
    connector = await create_and_load(env, key_type="rsa-2048")
    issued = await issue(
        connector, make_csr(rsa_key, "CN=bob,O=Example,C=DE"), owner=Owner("bob", "corp")
    )
    cert = x509.load_pem_x509_certificate(issued.certificate.encode())
    assert cert.subject.rfc4514_string() == "CN=bob"
    usage = ext(cert, x509.KeyUsage).value
    assert isinstance(usage, x509.KeyUsage)
    assert usage.digital_signature
    assert usage.key_encipherment
    with pytest.raises(x509.ExtensionNotFound):
        ext(cert, x509.SubjectAlternativeName)
    openssl_verify(env.tmp, connector.ca_certificate(), issued.certificate, "-purpose", "sslclient")


async def test_sign_ed25519_csr(env: Env) -> None:
    connector = await create_and_load(env)
    template = Template(key_types=("ed25519",))
    issued = await issue(connector, make_csr(ed25519.Ed25519PrivateKey.generate()), template)
    cert = x509.load_pem_x509_certificate(issued.certificate.encode())
    usage = ext(cert, x509.KeyUsage).value
    assert usage == x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    openssl_verify(env.tmp, connector.ca_certificate(), issued.certificate)


async def test_sign_template_usages(env: Env, ec_key: ec.EllipticCurvePrivateKey) -> None:
    connector = await create_and_load(env)
    template = Template(
        name="mail",
        validity_days=30,
        key_usage=("digitalSignature", "nonRepudiation"),
        extended_key_usage=("emailProtection", "clientAuth", "1.3.6.1.4.1.311.20.2.2"),
    )
    issued = await issue(connector, make_csr(ec_key), template)
    cert = x509.load_pem_x509_certificate(issued.certificate.encode())
    usage = ext(cert, x509.KeyUsage).value
    assert isinstance(usage, x509.KeyUsage)
    assert usage.digital_signature
    assert usage.content_commitment
    eku = ext(cert, x509.ExtendedKeyUsage).value
    assert list(eku) == [  # type: ignore[call-overload]
        ExtendedKeyUsageOID.EMAIL_PROTECTION,
        ExtendedKeyUsageOID.CLIENT_AUTH,
        ExtendedKeyUsageOID.SMARTCARD_LOGON,
    ]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=30) <= lifetime <= timedelta(days=30, minutes=5)


async def test_serials_are_random_and_distinct(
    env: Env, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    connector = await create_and_load(env)
    csr = make_csr(ec_key)
    results = await asyncio.gather(*(issue(connector, csr) for _ in range(50)))
    serials = [
        x509.load_pem_x509_certificate(r.certificate.encode()).serial_number for r in results
    ]
    assert len(set(serials)) == 50
    assert all(s > 0 and s.bit_length() >= 64 for s in serials)
    assert len({r.serial_number for r in results}) == 50


async def test_not_after_is_capped_by_the_ca(env: Env, ec_key: ec.EllipticCurvePrivateKey) -> None:
    connector = await create_and_load(env, days=30)
    ca = x509.load_pem_x509_certificate(connector.ca_certificate().encode())
    issued = await issue(connector, make_csr(ec_key), Template(validity_days=365))
    cert = x509.load_pem_x509_certificate(issued.certificate.encode())
    assert cert.not_valid_after_utc == ca.not_valid_after_utc
    assert cert.not_valid_before_utc >= ca.not_valid_before_utc
    openssl_verify(env.tmp, connector.ca_certificate(), issued.certificate)


async def test_weak_rsa_csr_is_denied(env: Env) -> None:
    connector = await create_and_load(env)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    result = await connector.sign(make_csr(weak), Template(), ALICE)
    assert isinstance(result, Denied)
    assert "RSA key of 1024 bits is too weak" in result.reason
    assert "2048" in result.reason


async def test_weak_ec_curve_is_denied(env: Env) -> None:
    connector = await create_and_load(env)
    weak = ec.generate_private_key(ec.SECP224R1())
    result = await connector.sign(make_csr(weak), Template(), ALICE)
    assert isinstance(result, Denied)
    assert "secp224r1 is too weak" in result.reason


@pytest.mark.parametrize(
    ("csr", "reason"),
    [
        ("not a csr at all", "request: not a PEM-encoded PKCS#10 certificate signing request"),
        ("", "request: empty"),
    ],
)
async def test_unparseable_csr_is_denied(env: Env, csr: str, reason: str) -> None:
    connector = await create_and_load(env)
    assert await connector.sign(csr, Template(), ALICE) == Denied(reason)


async def test_forged_csr_is_denied(env: Env, rsa_key: rsa.RSAPrivateKey) -> None:
    connector = await create_and_load(env)
    der = bytearray(
        x509.load_pem_x509_csr(make_csr(rsa_key).encode()).public_bytes(serialization.Encoding.DER)
    )
    der[-1] ^= 0x80
    pem = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    result = await connector.sign(pem, Template(), ALICE)
    assert result == Denied("request: the CSR signature does not verify")


async def test_an_empty_subject_is_named_after_the_owner(
    env: Env, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    connector = await create_and_load(env)
    issued = await issue(connector, make_csr(ec_key, subject=""))
    cert = x509.load_pem_x509_certificate(issued.certificate.encode())
    assert cert.subject.rfc4514_string() == "CN=alice"
    san = ext(cert, x509.SubjectAlternativeName)
    assert not san.critical
    assert list(san.value) == [x509.RFC822Name("alice@example.org")]  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (Template(extended_key_usage=("clientAuth", "serverAuth")), "serverAuth is not allowed"),
        (Template(extended_key_usage=("1.3.6.1.5.5.7.3.1",)), "is not allowed"),
        (Template(extended_key_usage=("anyExtendedKeyUsage",)), "is not allowed"),
        (Template(extended_key_usage=("bogus",)), "unknown extended key usage 'bogus'"),
        (Template(key_usage=("keyCertSign",)), "keyCertSign and cRLSign are for CA"),
        (Template(key_usage=("signEverything",)), "unknown key usage signEverything"),
        (Template(key_usage=("encipherOnly",)), "need keyAgreement"),
        (Template(validity_days=0), "validity_days must be positive"),
    ],
)
async def test_bad_templates_are_permanent_errors(
    env: Env, ec_key: ec.EllipticCurvePrivateKey, template: Template, message: str
) -> None:
    connector = await create_and_load(env)
    with pytest.raises(PermanentCAError, match=message):
        await connector.sign(make_csr(ec_key), template, ALICE)


async def test_key_usages_that_do_not_fit_the_key_are_denied(
    env: Env, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    connector = await create_and_load(env)
    template = Template(key_usage=("keyEncipherment",))
    result = await connector.sign(make_csr(ec_key), template, ALICE)
    assert isinstance(result, Denied)
    assert "an EC key cannot serve the key usages" in result.reason
