"""A CA under the organisation's root: CSR, install, enrollment, and what relying parties check.

The organisation's root is made with openssl; `ca create` runs as a process, the other `ca`
commands run their code in the test's process (a new interpreter each costs seconds). With
CERTTOKEN_PUBLIC_URL pointing at the running api (plain HTTP, as openssl's -crl_download and
ocsp fetch), openssl checks an issued certificate using only the URLs the certificate carries.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import AuthorityInformationAccessOID
from sqlalchemy import func, select

from services.api.app import create_app
from services.ca_worker.ca_create import create_ca_request
from services.ca_worker.ca_install import InstallError, import_ca, install_ca
from services.ca_worker.connectors.base import Issued, Template
from services.ca_worker.connectors.local import LocalConnector
from services.ca_worker.service import CAWorker
from services.cli import CommandError, build_parser, cmd_ca
from services.notifier.service import Notifier
from services.runtime import broker_for
from shared.config import Settings
from shared.db.models import CAConnector, Token
from shared.db.session import Database
from shared.identity import Owner
from tests.support.pki import make_csr
from tests.support.stack import Stack, prepare, serving, settings_for

ORG_CA = "orgca"
CA_EXTENSIONS = (
    "basicConstraints=critical,CA:TRUE,pathlen:0\n"
    "keyUsage=critical,keyCertSign,cRLSign,digitalSignature\n"
    "subjectKeyIdentifier=hash\n"
    "authorityKeyIdentifier=keyid:always\n"
)
LEAF_EXTENSIONS = (
    "basicConstraints=critical,CA:FALSE\n"
    "keyUsage=critical,digitalSignature\n"
    "subjectKeyIdentifier=hash\n"
    "authorityKeyIdentifier=keyid:always\n"
)


def openssl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)
    if check:
        assert done.returncode == 0, f"openssl {' '.join(args)}: {done.stderr}{done.stdout}"
    return done


def certtoken(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A ``certtoken`` command as an operator runs it, on *data_dir*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTTOKEN_")}
    env["CERTTOKEN_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def ca_command(settings: Settings, *args: str) -> None:
    """``certtoken ca ARGS`` in this process: the command's code without a new interpreter."""
    await cmd_ca(settings, build_parser().parse_args(["ca", *args]))


def make_root(workdir: Path, name: str = "root") -> tuple[Path, Path]:
    """The organisation's self-signed root (certificate, unencrypted key), by openssl."""
    cert, key = workdir / f"{name}.pem", workdir / f"{name}.key"
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "30",
        "-subj", f"/O=Example Org/CN=Example {name.title()} CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return cert, key


def sign_with_root(
    workdir: Path, csr: Path, root: tuple[Path, Path], out: str, extensions: str = CA_EXTENSIONS
) -> Path:
    """The root signs *csr* as ``openssl x509 -req`` does, with *extensions*."""
    ext = workdir / f"{out}.cnf"
    ext.write_text(extensions)
    cert = workdir / f"{out}.pem"
    serial = "0x" + os.urandom(16).hex()
    openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(root[0]), "-CAkey", str(root[1]),
        "-set_serial", serial, "-days", "10", "-extfile", str(ext), "-out", str(cert),
    )  # fmt: skip
    return cert


@asynccontextmanager
async def public_stack(settings: Settings) -> AsyncIterator[Stack]:
    """The system with CERTTOKEN_PUBLIC_URL set to where its api listens (plain HTTP)."""
    db = Database(settings.resolved_database_url)
    broker = broker_for(settings)
    await broker.start()
    notifier = Notifier(settings, broker, db)
    await notifier.start()
    worker: CAWorker | None = None
    try:
        app = create_app(settings, broker, manage_broker=False, db=db)
        async with serving(app) as url:
            public = settings.model_copy(update={"public_url": url})
            worker = CAWorker(public, broker, db)
            await worker.start()
            yield Stack(url, public, db, broker, worker)
    finally:
        await notifier.stop()
        if worker is not None:
            await worker.stop()
        await broker.close()
        await db.dispose()


async def poll(check: Callable[[], bool], what: str, attempts: int = 100) -> None:
    """Wait (bounded) until *check* holds."""
    for _ in range(attempts):
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never: {what}")


async def check_where_it_says(stack: Stack, workdir: Path, root: Path, serial: str) -> None:
    """CRL and OCSP at the URLs the leaf carries: good, then revoked after POST /token/revoke."""
    leaf_path, chain_path = workdir / "leaf.pem", workdir / "chain.pem"
    leaf = x509.load_pem_x509_certificate(leaf_path.read_bytes())
    points = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    crl_urls = [n.value for p in points for n in p.full_name or ()]
    assert crl_urls == [f"{stack.url}/ca/{ORG_CA}/crl"]
    ocsp_url = openssl("x509", "-in", str(leaf_path), "-noout", "-ocsp_uri").stdout.strip()
    assert ocsp_url == f"{stack.url}/ca/{ORG_CA}/ocsp"
    access = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    issuers = [
        a.access_location.value
        for a in access
        if a.access_method == AuthorityInformationAccessOID.CA_ISSUERS
    ]
    assert issuers == [f"{stack.url}/ca/{ORG_CA}/cacert/1?format=der"]
    async with httpx.AsyncClient() as public:
        crl_ready = False
        for _ in range(100):  # the ca_worker publishes a CRL after the CA's first issue
            crl_ready = (await public.get(crl_urls[0])).status_code == 200
            if crl_ready:
                break
            await asyncio.sleep(0.1)
        assert crl_ready, "no CRL published"
        issuer_der = (await public.get(issuers[0])).content
    issuer_path = workdir / "issuer.pem"
    issuer_path.write_bytes(
        x509.load_der_x509_certificate(issuer_der).public_bytes(serialization.Encoding.PEM)
    )

    def crl_check() -> subprocess.CompletedProcess[str]:
        return openssl(
            "verify", "-crl_download", "-crl_check", "-CAfile", str(root),
            "-untrusted", str(chain_path), str(leaf_path), check=False,
        )  # fmt: skip

    def ocsp_check() -> str:
        done = openssl(
            "ocsp", "-issuer", str(issuer_path), "-cert", str(leaf_path), "-url", ocsp_url,
            "-CAfile", str(root),
        )  # fmt: skip
        assert "Response verify OK" in done.stderr + done.stdout, done.stderr
        return done.stdout

    good = await asyncio.to_thread(crl_check)
    assert good.returncode == 0 and "leaf.pem: OK" in good.stdout, good.stderr + good.stdout
    assert f"{leaf_path}: good" in await asyncio.to_thread(ocsp_check)

    async with stack.client(await stack.admin_token()) as client:
        revoked = await client.post("/token/revoke", json={"serial": serial})
        assert revoked.status_code == 200, revoked.text
    await poll(lambda: "certificate revoked" in crl_check().stderr, "the CRL lists it")
    assert f"{leaf_path}: revoked" in await asyncio.to_thread(ocsp_check)


async def test_a_ca_under_the_organisations_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A loaded machine may take seconds to make a key: the init answer waits for it.
    settings = settings_for(tmp_path / "data", init_wait_seconds=30)
    await prepare(settings)
    root = make_root(tmp_path)
    csr = tmp_path / "orgca.csr"

    async with public_stack(settings) as stack:
        made = await asyncio.to_thread(
            certtoken,
            settings.data_dir,
            "ca", "create", ORG_CA, "--csr-out", str(csr), "--subject", "/O=Example Org/CN=Org CA",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        assert "not ready" in made.stderr
        capsys.readouterr()
        await ca_command(settings, "list")
        assert f"{ORG_CA}\tlocal\tnot ready: waiting for ca install" in capsys.readouterr().out

        admin = await stack.admin_token()
        async with stack.client(admin) as client:
            assert (await client.post("/user/", json={"user": "alice", "realm": "corp"})).is_success
            shown = (await client.get(f"/caconnector/{ORG_CA}")).json()["result"]["value"]
            assert shown[0]["data"]["awaiting_install"] is True and shown[0]["cacert"] == ""
            body = {"request": make_csr("alice"), "ca": ORG_CA, "user": "alice", "realm": "corp"}
            refused = await client.post("/token/init", json=body)
            assert refused.status_code == 400, refused.text
            assert refused.json()["result"]["error"]["message"] == (
                f"ca: CA connector {ORG_CA} is not ready "
                "(its certificate is not installed: certtoken ca install)"
            )
            async with stack.db.read() as session:
                assert await session.scalar(select(func.count()).select_from(Token)) == 0

            # The root signs; certtoken checks and installs; the ca_worker picks it up.
            cert = sign_with_root(tmp_path, csr, root, "orgca")
            await ca_command(
                settings, "install", ORG_CA, "--cert", str(cert), "--chain", str(root[0])
            )
            assert f"{ORG_CA!r} installed and ready" in capsys.readouterr().out

            answer = await client.post("/token/init", json=body)
            assert answer.status_code == 200, answer.text
            detail = answer.json()["detail"]
            assert detail["rollout_state"] == "enrolled", answer.text
            serial = detail["serial"]
            leaf_pem = detail["certificate"]
            assert len(x509.load_pem_x509_certificates(leaf_pem.encode())) == 1  # the leaf only

            genkey = await client.post(
                "/token/init",
                json={"genkey": 1, "ca": ORG_CA, "user": "alice", "realm": "corp"},
            )
            assert genkey.status_code == 200, genkey.text
            made_p12 = genkey.json()["detail"]
            assert "pkcs12" in made_p12, genkey.text

        async with stack.client() as public:
            chain_pem = (await public.get(f"/ca/{ORG_CA}/cacert", params={"chain": 1})).text
            alone = (await public.get(f"/ca/{ORG_CA}/cacert")).text
            der_chain = await public.get(
                f"/ca/{ORG_CA}/cacert", params={"format": "der", "chain": 1}
            )
            assert der_chain.status_code == 400
            assert der_chain.json()["result"]["error"]["message"].startswith("chain: ")
        (tmp_path / "chain.pem").write_text(chain_pem)
        (tmp_path / "leaf.pem").write_text(leaf_pem)
        await check_where_it_says(stack, tmp_path, root[0], serial)

    # The chain: the CA's certificate, then the root; DER and plain PEM stay the CA alone.
    chain = x509.load_pem_x509_certificates(chain_pem.encode())
    root_cert = x509.load_pem_x509_certificate(root[0].read_bytes())
    ca_cert = x509.load_pem_x509_certificate(cert.read_bytes())
    assert chain == [ca_cert, root_cert]
    assert x509.load_pem_x509_certificates(alone.encode()) == [ca_cert]
    opened = pkcs12.load_pkcs12(
        base64.b64decode(made_p12["pkcs12"]), made_p12["pkcs12_password"].encode()
    )
    assert [c.certificate for c in opened.additional_certs] == [ca_cert, root_cert]

    verified = openssl(
        "verify", "-CAfile", str(root[0]), "-untrusted", str(tmp_path / "chain.pem"),
        str(tmp_path / "leaf.pem"),
    )  # fmt: skip
    assert "leaf.pem: OK" in verified.stdout
    # Without the chain, the root alone cannot vouch for it.
    assert (
        openssl(
            "verify", "-CAfile", str(root[0]), str(tmp_path / "leaf.pem"), check=False
        ).returncode
        != 0
    )


async def test_install_refuses_what_does_not_fit_and_import_adopts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(tmp_path / "data")
    await prepare(settings)
    root = make_root(tmp_path)
    other_root = make_root(tmp_path, "other")
    db = Database(settings.resolved_database_url)
    try:
        request = await create_ca_request(settings, db, ORG_CA, subject="/CN=Org CA")
        csr = tmp_path / "orgca.csr"
        csr.write_text(request.csr)
        good = sign_with_root(tmp_path, csr, root, "good")
        not_ca = sign_with_root(tmp_path, csr, root, "notca", LEAF_EXTENSIONS)
        elsewhere = sign_with_root(tmp_path, csr, other_root, "elsewhere")
        stranger_key = tmp_path / "stranger.key"
        stranger_csr = tmp_path / "stranger.csr"
        openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(stranger_key), "-out", str(stranger_csr), "-subj", "/CN=Org CA",
        )  # fmt: skip
        another_key = sign_with_root(tmp_path, stranger_csr, root, "anotherkey")
        chain = root[0].read_bytes()
        refusals = {
            "another key": (another_key, chain, "not the CA's key"),
            "not a CA": (not_ca, chain, "not a CA certificate"),
            "other root": (elsewhere, chain, "does not chain to a self-signed root"),
            "no chain": (good, b"", "does not chain to a self-signed root"),
        }
        for case, (cert, given, expected) in refusals.items():
            with pytest.raises(InstallError) as refused:
                await install_ca(settings, db, ORG_CA, cert.read_bytes(), given)
            assert expected in str(refused.value), case
        async with db.read() as session:
            row = await session.get(CAConnector, ORG_CA)
        assert row is not None and row.cacert == "" and row.options["awaiting_install"] is True
        assert not (settings.ca_dir / ORG_CA / "cacert.pem").exists()
        # The CLI says the same and changes nothing either.
        with pytest.raises(CommandError) as cli:
            await ca_command(
                settings, "install", ORG_CA, "--cert", str(not_ca), "--chain", str(root[0])
            )
        assert "not a CA certificate" in str(cli.value)
        assert "nothing was changed" in str(cli.value)

        # ca import: an existing CA under the root, its key encrypted (PKCS#8 and traditional).
        (tmp_path / "pass.txt").write_text("old-ca-passphrase\n")
        existing_key = tmp_path / "existing.key"
        openssl(
            "pkey", "-in", str(stranger_key), "-aes256", "-passout", "pass:old-ca-passphrase",
            "-out", str(existing_key),
        )  # fmt: skip
        assert "ENCRYPTED PRIVATE KEY" in existing_key.read_text()
        await ca_command(
            settings,
            "import", "adopted", "--cert", str(another_key), "--key", str(existing_key),
            "--chain", str(root[0]), "--key-passphrase-file", str(tmp_path / "pass.txt"),
        )  # fmt: skip
        assert "'adopted' (type local) imported and ready" in capsys.readouterr().out
        stored = (settings.ca_dir / "adopted" / "cakey.pem").read_bytes()
        assert b"ENCRYPTED PRIVATE KEY" in stored and stored != existing_key.read_bytes()
        with pytest.raises(InstallError, match="is encrypted; give its passphrase"):
            await import_ca(
                settings, db, "wrongpass", another_key.read_bytes(), existing_key.read_bytes(),
                chain,
            )  # fmt: skip
        assert not (settings.ca_dir / "wrongpass").exists()

        traditional = tmp_path / "traditional.key"
        openssl(
            "ec", "-in", str(stranger_key), "-aes256", "-passout", "pass:trad",
            "-out", str(traditional),
        )  # fmt: skip
        assert "Proc-Type: 4,ENCRYPTED" in traditional.read_text()
        with pytest.raises(InstallError, match="wrong passphrase"):
            await import_ca(
                settings, db, "trad", another_key.read_bytes(), traditional.read_bytes(),
                chain, b"nope",
            )  # fmt: skip
        await import_ca(
            settings, db, "trad", another_key.read_bytes(), traditional.read_bytes(), chain,
            b"trad",
        )  # fmt: skip

        # An adopted CA signs, and what it issues verifies up to the root.
        async with db.read() as session:
            adopted = await session.get(CAConnector, "adopted")
        assert adopted is not None
        connector = LocalConnector.load(
            "adopted", adopted.options, settings.data_dir, settings.resolved_ca_passphrase
        )
        owner = Owner(username="alice", realm="corp")
        issued = await connector.sign(make_csr("alice"), Template(), owner)
        assert isinstance(issued, Issued), issued
        (tmp_path / "adopted-leaf.pem").write_text(issued.certificate)
        (tmp_path / "adopted-chain.pem").write_text("".join(issued.chain))
        openssl(
            "verify", "-CAfile", str(root[0]), "-untrusted", str(tmp_path / "adopted-chain.pem"),
            str(tmp_path / "adopted-leaf.pem"),
        )  # fmt: skip
        # The pending CA stays pending after all this.
        await install_ca(settings, db, ORG_CA, good.read_bytes(), chain)
    finally:
        await db.dispose()
