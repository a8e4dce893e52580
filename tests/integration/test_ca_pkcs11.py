"""A CA whose key is in a PKCS#11 token (SoftHSM2) signs through the real stack; the same
tests run against the file key store."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pkcs11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from services.ca_worker.connectors.base import PermanentCAError, TemporaryCAError
from services.ca_worker.keystores.pkcs11 import (
    Pkcs11CAKey,
    generate_pkcs11_key,
    load_pkcs11_key,
    rescan_modules,
)
from shared.config import Settings
from shared.db.models import CAConnector
from shared.db.session import Database
from shared.pki import signature_hash
from tests.support.pki import make_csr
from tests.support.procs import CERTTOKEN
from tests.support.softhsm import SoftHSM, softhsm_token
from tests.support.stack import Stack, prepare, running_stack, settings_for

CA = "orgca"


@dataclass
class OrgCA:
    """A CA made with ``certtoken ca create`` in one key store."""

    store: str
    settings: Settings
    hsm: SoftHSM | None
    cacert: Path


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)


def certtoken(
    settings: Settings, hsm: SoftHSM | None, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run a ``certtoken`` command on *settings*' data dir, seeing *hsm*'s tokens."""
    env = {**os.environ, "CERTTOKEN_DATA_DIR": str(settings.data_dir)}
    if hsm is not None:
        env.update(hsm.env())
    return subprocess.run(
        [*CERTTOKEN, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def create_args(store: str, hsm: SoftHSM | None, name: str = CA) -> list[str]:
    args = ["ca", "create", name, "--subject", f"/CN={name} root/O=Example"]
    if store == "pkcs11":
        assert hsm is not None
        args += [
            "--key-store",
            "pkcs11",
            "--pkcs11-uri",
            hsm.uri(),
            "--pin-file",
            str(hsm.pin_file),
        ]
    return args


@pytest.fixture(params=["file", "pkcs11"])
async def org_ca(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OrgCA]:
    """A prepared system plus CA orgca, created by the CLI in the key store of the param."""
    settings = settings_for(tmp_path / "data")
    await prepare(settings)
    with ExitStack() as stack:
        hsm = (
            stack.enter_context(softhsm_token(tmp_path / "hsm"))
            if request.param == "pkcs11"
            else None
        )
        made = await asyncio.to_thread(certtoken, settings, hsm, *create_args(request.param, hsm))
        assert made.returncode == 0, made.stderr
        cacert = tmp_path / "orgca.pem"
        cacert.write_text((settings.data_dir / "ca" / CA / "cacert.pem").read_text())
        yield OrgCA(request.param, settings, hsm, cacert)


async def enroll(client: httpx.AsyncClient, cn: str) -> dict[str, Any]:
    answer = await client.post(
        "/token/init",
        json={"request": make_csr(cn), "ca": CA, "user": "alice", "realm": "corp"},
    )
    assert answer.status_code == 200, answer.text
    detail: dict[str, Any] = answer.json()["detail"]
    assert detail["rollout_state"] == "enrolled", answer.text
    return detail


async def crl_listing(stack: Stack, serial: int) -> bytes:
    """The CA's CRL once it lists *serial* (bounded wait)."""
    deadline = time.monotonic() + 30
    async with stack.client() as public:
        while True:
            crl_der = (await public.get(f"/ca/{CA}/crl")).content
            crl = x509.load_der_x509_crl(crl_der)
            if crl.get_revoked_certificate_by_serial_number(serial) is not None:
                return crl_der
            assert time.monotonic() < deadline, "the CRL never listed the revoked serial"
            await asyncio.sleep(0.1)


async def ocsp_check(stack: Stack, cacert: Path, cert: Path) -> str:
    # In a thread: the api answering it runs in this test's event loop.
    done = await asyncio.to_thread(
        openssl,
        *("ocsp", "-issuer", str(cacert), "-cert", str(cert)),
        *("-url", f"{stack.url}/ca/{CA}/ocsp", "-CAfile", str(cacert)),
    )
    assert "Response verify OK" in done.stderr + done.stdout, done.stderr + done.stdout
    return done.stdout


async def test_issue_revoke_crl_and_ocsp_through_the_key_store(
    org_ca: OrgCA, tmp_path: Path
) -> None:
    ca_dir = org_ca.settings.data_dir / "ca" / CA
    async with running_stack(org_ca.settings) as stack:
        async with stack.db.read() as session:
            row = await session.get(CAConnector, CA)
        assert row is not None
        if org_ca.store == "pkcs11":
            # No key file anywhere: the connector names the token's key.
            assert sorted(p.name for p in ca_dir.iterdir()) == ["cacert.pem"]
            assert row.options["key_store"] == "pkcs11"
            assert "cakey" not in row.options
        else:
            assert (ca_dir / "cakey.pem").is_file()
            assert row.options.get("key_store", "file") == "file"

        token = await stack.admin_token()
        async with stack.client(token) as client:
            assert (await client.post("/user/", json={"user": "alice", "realm": "corp"})).is_success
            revoked = await enroll(client, "revoked")
            kept = await enroll(client, "kept")
            for name, detail in (("revoked", revoked), ("kept", kept)):
                (tmp_path / f"{name}.pem").write_text(detail["certificate"])
                verified = openssl(
                    "verify", "-CAfile", str(org_ca.cacert), str(tmp_path / f"{name}.pem")
                )
                assert verified.returncode == 0, verified.stderr + verified.stdout
            answer = await client.post(
                "/token/revoke", json={"serial": revoked["serial"], "reason": "keyCompromise"}
            )
            assert answer.status_code == 200, answer.text

        serial = x509.load_pem_x509_certificate(revoked["certificate"].encode()).serial_number
        (tmp_path / "crl.der").write_bytes(await crl_listing(stack, serial))
        checked = openssl(
            *("crl", "-inform", "DER", "-in", str(tmp_path / "crl.der")),
            *("-CAfile", str(org_ca.cacert), "-noout", "-text"),
        )
        assert "verify OK" in checked.stderr + checked.stdout, checked.stderr
        listed = [
            int(line.split(":", 1)[1], 16)
            for line in checked.stdout.splitlines()
            if line.strip().startswith("Serial Number:")
        ]
        assert listed == [serial], checked.stdout

        assert ": revoked" in await ocsp_check(stack, org_ca.cacert, tmp_path / "revoked.pem")
        assert ": good" in await ocsp_check(stack, org_ca.cacert, tmp_path / "kept.pem")
        # The responder's certificate is the CA key's signature (the token's, for pkcs11).
        issuer = x509.load_pem_x509_certificate(org_ca.cacert.read_bytes())
        cert = x509.load_pem_x509_certificate(kept["certificate"].encode())
        request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256()).build()
        async with stack.client() as public:
            got = await public.post(
                f"/ca/{CA}/ocsp",
                content=request.public_bytes(serialization.Encoding.DER),
                headers={"Content-Type": "application/ocsp-request"},
            )
        responder = ocsp.load_der_ocsp_response(got.content).certificates[0]
        responder.verify_directly_issued_by(issuer)
        # Issuer identifiers are the CA key's (never the throwaway key's that built the TBS).
        ski = x509.SubjectKeyIdentifier.from_public_key(issuer.public_key()).digest
        for issued in (cert, responder):
            aki = issued.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
            assert aki.key_identifier == ski

    if org_ca.hsm is not None:
        key = load_pkcs11_key(CA, row.options, org_ca.settings.data_dir)
        assert key.public_key() == issuer.public_key()
        flags = key.attributes
        assert (flags["sensitive"], flags["extractable"]) == (True, False)
        assert (flags["always_sensitive"], flags["never_extractable"]) == (True, True)
        key.close()


@pytest.fixture
def hsm(tmp_path: Path) -> Iterator[SoftHSM]:
    with softhsm_token(tmp_path / "hsm") as token:
        yield token


@pytest.mark.parametrize("key_type", ["ec-p256", "ec-p384", "rsa-2048"])
def test_the_token_signs_certificates_crls_and_csrs_openssl_accepts(
    hsm: SoftHSM, tmp_path: Path, key_type: str
) -> None:
    options = {"key_store": "pkcs11", "pkcs11_uri": hsm.uri(), "pkcs11_pin_file": "../hsm/pin"}
    data_dir = tmp_path / "data"
    data_dir.mkdir()  # the PIN file's relative path is under the data dir
    key, made = generate_pkcs11_key(CA, options, data_dir, key_type)
    assert made
    public = key.public_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{key_type} CA")])
    ski = x509.SubjectKeyIdentifier.from_public_key(public)
    now = datetime.now(UTC)
    cert = key.sign_certificate(
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(ski, critical=False),
        signature_hash(public),
    )
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == signature_hash(public).name
    (tmp_path / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    verified = openssl("verify", "-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "ca.pem"))
    assert verified.returncode == 0, verified.stderr

    crl = key.sign_crl(
        x509.CertificateRevocationListBuilder()
        .issuer_name(name)
        .last_update(now)
        .next_update(now + timedelta(days=1))
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(42).revocation_date(now).build()
        ),
        signature_hash(public),
    )
    (tmp_path / "crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    checked = openssl(
        "crl", "-in", str(tmp_path / "crl.pem"), "-CAfile", str(tmp_path / "ca.pem"), "-noout"
    )
    assert "verify OK" in checked.stderr + checked.stdout, checked.stderr

    csr = key.sign_csr(
        x509.CertificateSigningRequestBuilder().subject_name(name), signature_hash(public)
    )
    assert csr.public_key() == public  # the token's key, not the throwaway one
    (tmp_path / "ca.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    checked = openssl("req", "-in", str(tmp_path / "ca.csr"), "-verify", "-noout")
    assert "verify OK" in checked.stderr + checked.stdout, checked.stderr

    again, made_again = generate_pkcs11_key(CA, options, data_dir, key_type)
    assert not made_again  # the URI's key is there: used, not replaced
    assert again.public_key() == public
    key.close()
    again.close()


def test_a_wrong_pin_is_a_clear_error_naming_the_connector(hsm: SoftHSM, tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "data")
    wrong = tmp_path / "wrong-pin"
    wrong.write_text("not-the-pin\n")
    bad = SoftHSM(hsm.conf, hsm.module, hsm.label, wrong)
    done = certtoken(settings, bad, *create_args("pkcs11", bad, "hsmca"))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert "'hsmca'" in done.stderr and "refused the PIN" in done.stderr, done.stderr
    assert "not-the-pin" not in done.stderr + done.stdout

    options = {"key_store": "pkcs11", "pkcs11_uri": hsm.uri(), "pkcs11_pin_file": str(wrong)}
    with pytest.raises(PermanentCAError) as refused:
        load_pkcs11_key("hsmca", options, tmp_path)
    assert str(refused.value).startswith("CA connector 'hsmca': ")
    assert "refused the PIN" in str(refused.value)


def test_a_lost_session_reconnects_and_an_absent_token_is_temporary(
    hsm: SoftHSM, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    options = {"key_store": "pkcs11", "pkcs11_uri": hsm.uri(), "pkcs11_pin_file": str(hsm.pin_file)}
    key, _ = generate_pkcs11_key(CA, options, tmp_path, "ec-p256")
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "again")])
    )
    assert key.sign_csr(builder, hashes.SHA256()).is_signature_valid
    # The module restarted under the key (as after a token reset): its session is gone.
    pkcs11.lib(hsm.module).reinitialize()
    with caplog.at_level("WARNING", logger="services.ca_worker.keystores.pkcs11"):
        assert key.sign_csr(builder, hashes.SHA256()).is_signature_valid
    assert "PKCS#11 session lost; reconnecting" in caplog.messages

    tokens = hsm.conf.parent / "tokens"
    away = hsm.conf.parent / "away"
    tokens.rename(away)
    tokens.mkdir()
    rescan_modules()
    with pytest.raises(
        TemporaryCAError, match="'orgca': the PKCS#11 token label='certtoken' is not available"
    ):
        key.sign_csr(builder, hashes.SHA256())
    tokens.rmdir()
    away.rename(tokens)
    # Back again: the next signature finds it (the key store rescans the module itself).
    assert key.sign_csr(builder, hashes.SHA256()).is_signature_valid
    assert isinstance(key, Pkcs11CAKey)
    key.close()


async def test_an_absent_token_is_retried_until_it_is_back(hsm: SoftHSM, tmp_path: Path) -> None:
    from services.ca_worker.ca_create import create_local_ca

    settings = settings_for(
        tmp_path / "data", init_wait_seconds=0.5, retry_delays_ms=[1000], max_attempts=30
    )
    await prepare(settings)
    # A key made beforehand (as with the HSM's own tools): ca create uses it.
    options = {"pkcs11_uri": hsm.uri(), "pkcs11_pin_file": str(hsm.pin_file)}
    generate_pkcs11_key(CA, options, settings.data_dir, "ec-p256")[0].close()
    async with running_stack(settings) as stack:
        await create_local_ca(
            settings,
            stack.db,
            CA,
            key_store="pkcs11",
            pkcs11_uri=hsm.uri(),
            pkcs11_pin_file=str(hsm.pin_file),
        )
        token = await stack.admin_token()
        async with stack.client(token) as client:
            assert (await client.post("/user/", json={"user": "alice", "realm": "corp"})).is_success
            await enroll(client, "before")  # the worker has the CA loaded, its session open

            tokens, away = hsm.conf.parent / "tokens", hsm.conf.parent / "away"
            tokens.rename(away)
            tokens.mkdir()
            rescan_modules()  # as a module does when its device goes: the sessions end
            answer = await client.post(
                "/token/init",
                json={"request": make_csr("during"), "ca": CA, "user": "alice", "realm": "corp"},
            )
            assert answer.status_code == 200, answer.text
            serial = answer.json()["detail"]["serial"]
            assert answer.json()["detail"]["rollout_state"] == "submitted", answer.text
            tokens.rmdir()
            away.rename(tokens)

            deadline = time.monotonic() + 30
            while True:
                listed = (await client.get("/token/", params={"serial": serial})).json()
                shown = listed["result"]["value"]["tokens"][0]
                if shown["rollout_state"] != "submitted":
                    break
                assert time.monotonic() < deadline, "the enrollment was never retried"
                await asyncio.sleep(0.2)
            assert shown["rollout_state"] == "enrolled", shown


async def test_a_token_key_under_the_organisations_root(hsm: SoftHSM, tmp_path: Path) -> None:
    """ca create --csr-out makes the key in the token and signs the CSR there; once the root's
    certificate is installed, the token signs what the CA issues."""
    from services.ca_worker.ca_create import create_ca_request
    from services.ca_worker.ca_install import install_ca
    from tests.integration.test_ca_org_root import make_root, sign_with_root

    settings = settings_for(tmp_path / "data")
    await prepare(settings)
    db = Database(settings.resolved_database_url)
    try:
        made = await create_ca_request(
            settings,
            db,
            "issuing",
            subject="/O=Example/CN=Example Issuing CA",
            key_type="ec-p384",
            key_store="pkcs11",
            pkcs11_uri=hsm.uri("issuing"),
            pkcs11_pin_file=str(hsm.pin_file),
        )
        assert "cakey" not in made.connector.options
        csr = x509.load_pem_x509_csr(made.csr.encode())
        key = load_pkcs11_key("issuing", made.connector.options, settings.data_dir)
        assert csr.public_key() == key.public_key()
        assert isinstance(csr.public_key(), ec.EllipticCurvePublicKey)
        assert csr.signature_hash_algorithm is not None
        assert csr.signature_hash_algorithm.name == "sha384"
        assert key.attributes["extractable"] is False
        key.close()
        (tmp_path / "issuing.csr").write_text(made.csr)
        checked = openssl("req", "-in", str(tmp_path / "issuing.csr"), "-verify", "-noout")
        assert "verify OK" in checked.stderr + checked.stdout, checked.stderr

        root = make_root(tmp_path)
        issued = sign_with_root(tmp_path, tmp_path / "issuing.csr", root, "issuing")
        await install_ca(settings, db, "issuing", issued.read_bytes(), root[0].read_bytes())
    finally:
        await db.dispose()

    async with running_stack(settings) as stack:
        token = await stack.admin_token()
        async with stack.client(token) as client:
            assert (await client.post("/user/", json={"user": "alice", "realm": "corp"})).is_success
            answer = await client.post(
                "/token/init",
                json={
                    "request": make_csr("leaf"),
                    "ca": "issuing",
                    "user": "alice",
                    "realm": "corp",
                },
            )
    detail = answer.json()["detail"]
    assert detail["rollout_state"] == "enrolled", answer.text
    (tmp_path / "leaf.pem").write_text(detail["certificate"])
    verified = openssl(
        *("verify", "-CAfile", str(root[0]), "-untrusted", str(issued)),
        str(tmp_path / "leaf.pem"),
    )
    assert verified.returncode == 0, verified.stderr + verified.stdout
