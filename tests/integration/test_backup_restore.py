"""``certtoken backup`` of a running system, ``certtoken restore`` into a fresh place.

Back up while the system serves, enroll more (lost to the restored system), restore into a new
data dir and database, and check that the tokens from before are there with certificates that
verify against the restored CA, that the restored system issues, revokes and publishes CRLs,
and that no token serial, certificate serial or CRL number comes out twice.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from sqlalchemy import func, select
from sqlalchemy.engine import URL

from services.maintenance.archive import MAGIC
from services.maintenance.backup import make_backup
from services.maintenance.restore import RestoreError, restore
from shared.config import Settings
from shared.db.models import Admin, CAConnector, Token, TokenKey
from shared.db.session import Database
from shared.security import SecretBox
from tests.conftest import _asyncpg_kwargs, run_in_fresh_loop
from tests.support.commands import certtoken
from tests.support.notify import add_user
from tests.support.pki import make_csr, openssl_verify
from tests.support.stack import Stack, prepare, running_stack, settings_for

PASSPHRASE = "a long backup passphrase 42"


@pytest.fixture
def another_postgres_url(postgres_admin_url: URL) -> Iterator[str]:
    """A second fresh, empty PostgreSQL database (the restore's target)."""
    import asyncpg

    name = f"certtoken_restore_{uuid.uuid4().hex[:16]}"

    async def execute(sql: str) -> None:
        conn = await asyncpg.connect(**_asyncpg_kwargs(postgres_admin_url))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    run_in_fresh_loop(lambda: execute(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        run_in_fresh_loop(lambda: execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "backup-passphrase"
    path.write_text(PASSPHRASE + "\n")
    return path


# --- helpers --------------------------------------------------------------------------------


async def csr_token(admin: httpx.AsyncClient) -> dict[str, Any]:
    body = {"request": make_csr("alice"), "ca": "localca", "user": "alice", "realm": "corp"}
    answer = await admin.post("/token/init", json=body)
    detail: dict[str, Any] = answer.json()["detail"]
    assert detail["rollout_state"] == "enrolled", answer.text
    return detail


async def genkey_token(admin: httpx.AsyncClient) -> dict[str, Any]:
    body = {"genkey": 1, "keytype": "ec-p256", "ca": "localca", "user": "alice", "realm": "corp"}
    answer = await admin.post("/token/init", json=body)
    detail: dict[str, Any] = answer.json()["detail"]
    assert detail["rollout_state"] == "enrolled", answer.text
    return detail


async def revoke(admin: httpx.AsyncClient, serial: str) -> None:
    answer = await admin.post("/token/revoke", json={"serial": serial, "reason": "superseded"})
    assert answer.status_code == 200, answer.text


def cert_serial(detail: dict[str, Any]) -> int:
    return x509.load_pem_x509_certificate(detail["certificate"].encode()).serial_number


async def crl_listing(stack: Stack, *serials: int) -> x509.CertificateRevocationList:
    """The CA's CRL once it lists every one of *serials* (bounded wait: it is rebuilt async)."""
    async with stack.client() as public:
        for _ in range(200):
            crl = x509.load_der_x509_crl((await public.get("/ca/localca/crl")).content)
            if all(crl.get_revoked_certificate_by_serial_number(s) for s in serials):
                return crl
            await asyncio.sleep(0.05)
    raise AssertionError(f"the CRL never listed {serials}")


def crl_number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def opens_pkcs12(tmp_path: Path, b64: str, password: str) -> bool:
    path = tmp_path / "download.p12"
    path.write_bytes(base64.b64decode(b64))
    opened = subprocess.run(
        ["openssl", "pkcs12", "-info", "-nodes", "-in", str(path), "-passin", f"pass:{password}"],
        capture_output=True,
        text=True,
    )
    return opened.returncode == 0 and "PRIVATE KEY" in opened.stdout


async def token_serials(admin: httpx.AsyncClient) -> set[str]:
    listed = (await admin.get("/token/", params={"pagesize": 100})).json()
    return {t["serial"] for t in listed["result"]["value"]["tokens"]}


@pytest.fixture
def restored_target(
    request: pytest.FixtureRequest, prepared_settings: Settings, tmp_path: Path
) -> Settings:
    """Settings of a fresh place of the prepared system's database kind."""
    overrides = {}
    if prepared_settings.database_url:
        overrides["database_url"] = request.getfixturevalue("another_postgres_url")
    return settings_for(tmp_path / "restored", **overrides)


# --- tests ----------------------------------------------------------------------------------


async def test_backup_while_running_then_restore_into_a_fresh_place(
    prepared_settings: Settings, restored_target: Settings, passphrase_file: Path, tmp_path: Path
) -> None:
    settings = prepared_settings
    archive = tmp_path / "backups" / "certtoken.backup"
    archive.parent.mkdir()
    async with running_stack(settings) as stack, stack.client(await stack.admin_token()) as admin:
        await add_user(admin)
        kept, generated = await csr_token(admin), await genkey_token(admin)
        revoked = await csr_token(admin)
        await revoke(admin, revoked["serial"])
        await crl_listing(stack, cert_serial(revoked))

        made = await certtoken(
            settings, "backup", str(archive), "--passphrase-file", str(passphrase_file)
        )
        assert made.returncode == 0, made.stderr
        assert "copying the" in made.stderr and "backup written to" in made.stdout

        # Lost to the restored system: issued, and a CRL signed, after the backup.
        lost = [await csr_token(admin), await csr_token(admin)]
        await revoke(admin, lost[0]["serial"])
        last_crl_before = crl_number(await crl_listing(stack, cert_serial(lost[0])))

    assert archive.stat().st_mode & 0o777 == 0o600
    sealed = archive.read_bytes()
    secret_key = (settings.data_dir / "secret_key").read_text().strip()
    for plain in (b"BEGIN CERTIFICATE", secret_key.encode(), b"alice", b"SQLite format"):
        assert plain not in sealed
    earlier = [kept, generated, revoked, *lost]

    target = restored_target
    restored = await certtoken(
        target, "restore", str(archive), "--passphrase-file", str(passphrase_file)
    )
    assert restored.returncode == 0, restored.stderr
    assert (target.data_dir / "secret_key").read_text().strip() == secret_key

    async with running_stack(target) as stack, stack.client(await stack.admin_token()) as admin:
        serials = await token_serials(admin)
        assert serials == {kept["serial"], generated["serial"], revoked["serial"]}
        cacert = (await admin.get("/ca/localca/cacert")).text
        assert cacert == (target.data_dir / "ca" / "localca" / "cacert.pem").read_text()
        for detail in (kept, generated):
            checked = openssl_verify(tmp_path, cacert, detail["certificate"])
            assert checked.returncode == 0, checked.stdout + checked.stderr
        # Sealed with the restored secret key: the PKCS#12 opens.
        download = await admin.get(f"/token/{generated['serial']}/pkcs12")
        assert download.status_code == 200, download.text
        b64 = download.json()["result"]["value"]["pkcs12"]
        assert opens_pkcs12(tmp_path, b64, generated["pkcs12_password"])

        fresh = [await csr_token(admin), await csr_token(admin), await genkey_token(admin)]
        assert not {d["serial"] for d in fresh} & {d["serial"] for d in earlier}
        assert not {cert_serial(d) for d in fresh} & {cert_serial(d) for d in earlier}
        for detail in fresh:
            checked = openssl_verify(tmp_path, cacert, detail["certificate"])
            assert checked.returncode == 0, checked.stdout + checked.stderr
        await revoke(admin, fresh[0]["serial"])
        crl = await crl_listing(stack, cert_serial(fresh[0]), cert_serial(revoked))
        assert crl.get_revoked_certificate_by_serial_number(cert_serial(lost[0])) is None
        # No CRL number is used twice, though the restored CA never saw the lost CRLs.
        assert crl_number(crl) > last_crl_before
        assert crl.is_signature_valid(
            x509.load_pem_x509_certificate(cacert.encode()).public_key()  # type: ignore[arg-type]
        )

    # Once restored, the place is not empty: a second restore changes nothing.
    listing = sorted(p.name for p in target.data_dir.iterdir())
    with pytest.raises(RestoreError, match="not empty"):
        await restore(target, archive, PASSPHRASE.encode(), lambda _: None)
    assert sorted(p.name for p in target.data_dir.iterdir()) == listing


async def test_a_damaged_backup_or_a_wrong_passphrase_writes_nothing(tmp_path: Path) -> None:
    source = settings_for(tmp_path / "data")
    await prepare(source)
    archive = tmp_path / "backup"
    manifest = await make_backup(source, archive, PASSPHRASE.encode(), lambda _: None)
    assert manifest["database"]["kind"] == "sqlite"
    assert manifest["database"]["tables"]["admin"] == 1
    assert "ca/localca/cakey.pem" in manifest["members"]
    target = settings_for(tmp_path / "target")

    async def refused(path: Path, passphrase: str) -> str:
        with pytest.raises(RestoreError) as caught:
            await restore(target, path, passphrase.encode(), lambda _: None)
        assert not target.data_dir.exists()
        return str(caught.value)

    assert "wrong passphrase" in await refused(archive, "not the passphrase at all")
    data = bytearray(archive.read_bytes())
    header = int.from_bytes(data[len(MAGIC) : len(MAGIC) + 4], "big")
    data[len(MAGIC) + 4 + header + 100] ^= 0x01  # inside the first chunk
    (tmp_path / "flipped").write_bytes(bytes(data))
    assert "chunk 0 does not verify" in await refused(tmp_path / "flipped", PASSPHRASE)
    (tmp_path / "cut").write_bytes(archive.read_bytes()[:-10])
    assert "damaged backup file" in await refused(tmp_path / "cut", PASSPHRASE)
    (tmp_path / "other").write_bytes(b"PK\x03\x04 not a backup")
    assert "not a certtoken backup" in await refused(tmp_path / "other", PASSPHRASE)
    # An archive is never overwritten.
    with pytest.raises(Exception, match="exists already"):
        await make_backup(source, archive, PASSPHRASE.encode(), lambda _: None)


async def admins_and_cacert(settings: Settings) -> tuple[list[str], str, int]:
    db = Database(settings.resolved_database_url)
    try:
        async with db.read() as session:
            admins = list(await session.scalars(select(Admin.name)))
            connector = await session.get(CAConnector, "localca")
            tokens = await session.scalar(select(func.count()).select_from(Token))
    finally:
        await db.dispose()
    assert connector is not None
    return admins, connector.cacert, int(tokens or 0)


@pytest.mark.postgres
async def test_sqlite_backups_restore_into_postgresql_and_back(
    tmp_path: Path, postgres_url: str
) -> None:
    source = settings_for(tmp_path / "sqlite")
    await prepare(source)
    async with running_stack(source) as stack, stack.client(await stack.admin_token()) as admin:
        await add_user(admin)
        await genkey_token(admin)
    expected = await admins_and_cacert(source)
    assert expected[2] == 1

    into_postgres = settings_for(tmp_path / "pg", database_url=postgres_url)
    await make_backup(source, tmp_path / "one", PASSPHRASE.encode(), lambda _: None)
    await restore(into_postgres, tmp_path / "one", PASSPHRASE.encode(), lambda _: None)
    assert await admins_and_cacert(into_postgres) == expected

    back = settings_for(tmp_path / "back")
    manifest = await make_backup(into_postgres, tmp_path / "two", PASSPHRASE.encode(), print)
    assert manifest["database"]["kind"] == "postgresql"
    await restore(back, tmp_path / "two", PASSPHRASE.encode(), lambda _: None)
    assert await admins_and_cacert(back) == expected
    # The twice-restored key opens what the first system sealed: its PKCS#12.
    db = Database(back.resolved_database_url)
    try:
        async with db.read() as session:
            [sealed] = await session.scalars(select(TokenKey.pkcs12))
    finally:
        await db.dispose()
    assert SecretBox(back.resolved_secret_key).open(sealed).startswith(b"0")
