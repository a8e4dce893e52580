"""CA rollover: a new key for the same connector, the old one answering for what it issued.

Certificates are issued under the old key and the new one and one of each is revoked; openssl
checks each against its own generation's CRL (fetched from the URL the certificate names) and
OCSP answer. The `ca` commands run in the test's process.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID
from sqlalchemy import select, update

from services.ca_worker.ca_create import create_ca_request
from services.ca_worker.ca_install import install_ca
from services.cli import CommandError
from shared.ca_keyids import authority_key_id, subject_key_id
from shared.db.models import CAConnector, CAGeneration, IssuedCertificate, utcnow
from shared.db.session import Database
from tests.integration.test_ca_org_root import (
    ca_command,
    make_root,
    openssl,
    poll,
    public_stack,
    sign_with_root,
)
from tests.support.pki import make_csr
from tests.support.softhsm import softhsm_token
from tests.support.stack import Stack, prepare, settings_for

CA = "localca"


async def enroll(stack: Stack, client: httpx.AsyncClient, ca: str, name: str) -> tuple[str, str]:
    """Enroll a certificate for alice at *ca*: the token serial and the certificate (PEM)."""
    body = {
        "request": make_csr(name, ec.generate_private_key(ec.SECP256R1())),
        "ca": ca,
        "user": "alice",
        "realm": "corp",
    }
    answer = await client.post("/token/init", json=body)
    assert answer.status_code == 200, answer.text
    detail = answer.json()["detail"]
    assert detail["rollout_state"] == "enrolled", answer.text
    return detail["serial"], detail["certificate"]


async def generation_loaded(stack: Stack, ca: str, generation: int) -> None:
    """Wait (bounded) until the ca_worker issues with *generation* of *ca*."""
    for _ in range(100):
        await stack.worker.registry.get(ca)
        if stack.worker.registry.loaded_generation(ca) == generation:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the ca_worker never loaded generation {generation} of {ca}")


def crl_urls(pem: str) -> list[str]:
    cert = x509.load_pem_x509_certificate(pem.encode())
    points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    return [str(n.value) for p in points for n in p.full_name or ()]


async def test_rollover_of_a_self_signed_ca(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(tmp_path / "data", init_wait_seconds=30)
    await prepare(settings)
    async with public_stack(settings) as stack:
        async with stack.client(await stack.admin_token()) as client:
            assert (await client.post("/user/", json={"user": "alice", "realm": "corp"})).is_success
            old_revoked = await enroll(stack, client, CA, "old-revoked")
            old_good = await enroll(stack, client, CA, "old-good")
            async with stack.client() as public:
                old_ca = (await public.get(f"/ca/{CA}/cacert")).text

            await ca_command(settings, "rollover", CA)
            out = capsys.readouterr().out
            assert f"{CA!r} rolled over: generation 2" in out
            await generation_loaded(stack, CA, 2)
            new_revoked = await enroll(stack, client, CA, "new-revoked")
            new_good = await enroll(stack, client, CA, "new-good")
            for serial, _ in (old_revoked, new_revoked):
                revoked = await client.post("/token/revoke", json={"serial": serial})
                assert revoked.status_code == 200, revoked.text

        async with stack.client() as public:
            new_ca = (await public.get(f"/ca/{CA}/cacert")).text
            assert (await public.get(f"/ca/{CA}/cacert/1")).text == old_ca
            assert (await public.get(f"/ca/{CA}/cacert/2")).text == new_ca
        assert new_ca != old_ca
        old_cert = x509.load_pem_x509_certificate(old_ca.encode())
        new_cert = x509.load_pem_x509_certificate(new_ca.encode())
        assert new_cert.subject == old_cert.subject
        assert new_cert.public_key() != old_cert.public_key()
        # New enrollments name the new key; each generation names its own CRL.
        for _, pem in (new_revoked, new_good):
            issued = x509.load_pem_x509_certificate(pem.encode())
            assert authority_key_id(issued) == subject_key_id(new_cert)
            assert crl_urls(pem) == [f"{stack.url}/ca/{CA}/crl/2"]
        access = (
            x509.load_pem_x509_certificate(new_good[1].encode())
            .extensions.get_extension_for_class(x509.AuthorityInformationAccess)
            .value
        )
        issuers = [
            str(a.access_location.value)
            for a in access
            if a.access_method == AuthorityInformationAccessOID.CA_ISSUERS
        ]
        assert issuers == [f"{stack.url}/ca/{CA}/cacert/2?format=der"]
        async with httpx.AsyncClient() as public:
            der = (await public.get(issuers[0])).content
        assert x509.load_der_x509_certificate(der) == new_cert
        for _, pem in (old_revoked, old_good):
            issued = x509.load_pem_x509_certificate(pem.encode())
            assert authority_key_id(issued) == subject_key_id(old_cert)
            assert crl_urls(pem) == [f"{stack.url}/ca/{CA}/crl"]
            # Its CA issuers URL still leads to the key that signed it, after the rollover.
            old_issuers = [
                str(a.access_location.value)
                for a in issued.extensions.get_extension_for_class(
                    x509.AuthorityInformationAccess
                ).value
                if a.access_method == AuthorityInformationAccessOID.CA_ISSUERS
            ]
            assert old_issuers == [f"{stack.url}/ca/{CA}/cacert/1?format=der"]
            async with httpx.AsyncClient() as public:
                der = (await public.get(old_issuers[0])).content
            assert x509.load_der_x509_certificate(der) == old_cert

        (tmp_path / "old-ca.pem").write_text(old_ca)
        (tmp_path / "new-ca.pem").write_text(new_ca)
        cases = {
            "old-revoked": (old_revoked[1], "old-ca.pem", "revoked"),
            "old-good": (old_good[1], "old-ca.pem", "good"),
            "new-revoked": (new_revoked[1], "new-ca.pem", "revoked"),
            "new-good": (new_good[1], "new-ca.pem", "good"),
        }
        for name, (pem, _, _) in cases.items():
            (tmp_path / f"{name}.pem").write_text(pem)

        def crl_check(name: str) -> str:
            _, issuer, _ = cases[name]
            done = openssl(
                "verify", "-crl_download", "-crl_check", "-CAfile", str(tmp_path / issuer),
                str(tmp_path / f"{name}.pem"), check=False,
            )  # fmt: skip
            return done.stdout + done.stderr

        # Each CRL (from the URL in the certificate, signed by its own generation's key)
        # lists its own revoked certificate.
        for name in ("old-revoked", "new-revoked"):
            await poll(lambda n=name: "certificate revoked" in crl_check(n), f"{name} in its CRL")
        for name in ("old-good", "new-good"):
            assert f"{name}.pem: OK" in await asyncio.to_thread(crl_check, name)

        async with stack.client() as public:
            crls = {g: (await public.get(f"/ca/{CA}/crl/{g}")).content for g in (1, 2)}
            assert (await public.get(f"/ca/{CA}/crl")).content == crls[1]
        listed = {
            g: {r.serial_number for r in x509.load_der_x509_crl(der)} for g, der in crls.items()
        }
        serial_of = {n: x509.load_pem_x509_certificate(p.encode()).serial_number for n, (p, _, _) in cases.items()}  # fmt: skip
        assert listed == {1: {serial_of["old-revoked"]}, 2: {serial_of["new-revoked"]}}

        for name, (_, issuer, status) in cases.items():
            done = await asyncio.to_thread(
                openssl,
                "ocsp", "-issuer", str(tmp_path / issuer), "-cert", str(tmp_path / f"{name}.pem"),
                "-url", f"{stack.url}/ca/{CA}/ocsp", "-CAfile", str(tmp_path / issuer),
            )  # fmt: skip
            assert "Response verify OK" in done.stderr + done.stdout, (name, done.stderr)
            assert f"{name}.pem: {status}" in done.stdout, (name, done.stdout)

        capsys.readouterr()
        await ca_command(settings, "list")
        listing = capsys.readouterr().out
        assert f"{CA}\tlocal\tready\t" in listing and "\tgeneration 2" in listing
        assert "  generation 1\tanswering for its certificates" in listing

        # The old generation's certificates all expire: it is retired, no more CRLs for it.
        past = utcnow() - timedelta(days=1)
        async with stack.db.write() as session:
            await session.execute(
                update(IssuedCertificate)
                .where(IssuedCertificate.issuer_key_id == subject_key_id(old_cert))
                .values(not_after=past)
            )
            await session.execute(
                update(CAGeneration).where(CAGeneration.ca == CA).values(superseded_at=past)
            )
        await stack.worker.publisher.refresh(CA)
        async with stack.db.read() as session:
            retired = await session.scalar(select(CAGeneration).where(CAGeneration.ca == CA))
        assert retired is not None and retired.retired_at is not None
        async with stack.client() as public:
            gone = await public.get(f"/ca/{CA}/crl/1")
            assert gone.status_code == 404 and "retired" in gone.text
            assert (await public.get(f"/ca/{CA}/crl")).content == (
                await public.get(f"/ca/{CA}/crl/2")
            ).content
        await ca_command(settings, "list")
        assert "  generation 1\tretired " in capsys.readouterr().out


async def test_rollover_under_the_organisations_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(tmp_path / "data", init_wait_seconds=30)
    await prepare(settings)
    root = make_root(tmp_path)
    db = Database(settings.resolved_database_url)
    try:
        request = await create_ca_request(settings, db, "orgca", subject="/CN=Org CA")
        (tmp_path / "g1.csr").write_text(request.csr)
        first = sign_with_root(tmp_path, tmp_path / "g1.csr", root, "g1")
        await install_ca(settings, db, "orgca", first.read_bytes(), root[0].read_bytes())
    finally:
        await db.dispose()

    async with public_stack(settings) as stack:
        async with stack.client(await stack.admin_token()) as client:
            assert (await client.post("/user/", json={"user": "alice", "realm": "corp"})).is_success
            _, before = await enroll(stack, client, "orgca", "before")

            with pytest.raises(CommandError, match="under the organisation's root"):
                await ca_command(settings, "rollover", "orgca")
            csr = tmp_path / "g2.csr"
            await ca_command(settings, "rollover", "orgca", "--csr-out", str(csr))
            with pytest.raises(CommandError, match="awaits its certificate"):
                await ca_command(settings, "rollover", "orgca", "--csr-out", str(csr))
            capsys.readouterr()
            await ca_command(settings, "list")
            assert "rollover to generation 2 pending" in capsys.readouterr().out
            # Until the root signs, the current key keeps issuing.
            _, meanwhile = await enroll(stack, client, "orgca", "meanwhile")
            first_cert = x509.load_pem_x509_certificate(first.read_bytes())
            assert authority_key_id(
                x509.load_pem_x509_certificate(meanwhile.encode())
            ) == subject_key_id(first_cert)

            second = sign_with_root(tmp_path, csr, root, "g2")
            await ca_command(
                settings, "install", "orgca", "--cert", str(second), "--chain", str(root[0])
            )
            await generation_loaded(stack, "orgca", 2)
            _, after = await enroll(stack, client, "orgca", "after")

        second_cert = x509.load_pem_x509_certificate(second.read_bytes())
        assert authority_key_id(x509.load_pem_x509_certificate(after.encode())) == (
            subject_key_id(second_cert)
        )
        async with stack.client() as public:
            chains = {
                "before": (await public.get("/ca/orgca/cacert/1", params={"chain": 1})).text,
                "after": (await public.get("/ca/orgca/cacert", params={"chain": 1})).text,
            }
        # Each certificate verifies up to the root alone, through its own generation's chain.
        for name, pem in (("before", before), ("after", after)):
            (tmp_path / f"{name}.pem").write_text(pem)
            (tmp_path / f"{name}-chain.pem").write_text(chains[name])

            def verify(name: str = name) -> str:
                return openssl(
                    "verify", "-crl_download", "-crl_check", "-CAfile", str(root[0]),
                    "-untrusted", str(tmp_path / f"{name}-chain.pem"),
                    str(tmp_path / f"{name}.pem"), check=False,
                ).stdout  # fmt: skip

            # The new generation publishes its first CRL after its first certificate.
            await poll(lambda n=name: f"{n}.pem: OK" in verify(n), f"{name} verifies with its CRL")
        async with stack.db.read() as session:
            row = await session.get(CAConnector, "orgca")
        assert row is not None and "rollover" not in row.options


async def test_rollover_into_a_pkcs11_token(tmp_path: Path) -> None:
    """A file-key CA rolls over to a key made in a token; both generations keep answering."""
    settings = settings_for(tmp_path / "data", init_wait_seconds=30)
    await prepare(settings)
    with softhsm_token(tmp_path / "hsm") as hsm:
        async with public_stack(settings) as stack:
            async with stack.client(await stack.admin_token()) as client:
                assert (
                    await client.post("/user/", json={"user": "alice", "realm": "corp"})
                ).is_success
                _, old = await enroll(stack, client, CA, "old")
                async with stack.client() as public:
                    old_ca = (await public.get(f"/ca/{CA}/cacert")).text
                await ca_command(
                    settings, "rollover", CA, "--key-store", "pkcs11",
                    "--pkcs11-uri", hsm.uri("ca2"), "--pin-file", str(hsm.pin_file),
                )  # fmt: skip
                await generation_loaded(stack, CA, 2)
                serial, new = await enroll(stack, client, CA, "new")
                revoked = await client.post("/token/revoke", json={"serial": serial})
                assert revoked.status_code == 200, revoked.text
            async with stack.db.read() as session:
                row = await session.get(CAConnector, CA)
            assert row is not None and row.options["key_store"] == "pkcs11"
            assert "cakey" not in row.options
            (tmp_path / "old-ca.pem").write_text(old_ca)
            (tmp_path / "new-ca.pem").write_text(row.cacert)
            (tmp_path / "old.pem").write_text(old)
            (tmp_path / "new.pem").write_text(new)

            def crl_check(name: str, issuer: str) -> str:
                done = openssl(
                    "verify", "-crl_download", "-crl_check", "-CAfile",
                    str(tmp_path / issuer), str(tmp_path / name), check=False,
                )  # fmt: skip
                return done.stdout + done.stderr

            # The token's key signs generation 2's CRL; the file key still signs generation 1's.
            await poll(
                lambda: "certificate revoked" in crl_check("new.pem", "new-ca.pem"),
                "the token-signed CRL lists the new certificate",
            )
            assert "old.pem: OK" in await asyncio.to_thread(crl_check, "old.pem", "old-ca.pem")
            done = await asyncio.to_thread(
                openssl,
                "ocsp", "-issuer", str(tmp_path / "old-ca.pem"), "-cert", str(tmp_path / "old.pem"),
                "-url", f"{stack.url}/ca/{CA}/ocsp", "-CAfile", str(tmp_path / "old-ca.pem"),
            )  # fmt: skip
            assert "Response verify OK" in done.stderr + done.stdout
            assert "old.pem: good" in done.stdout
