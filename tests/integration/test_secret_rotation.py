"""``certtoken secrets rotate`` while the system runs: everything sealed moves to a new key.

A genkey token (its sealed PKCS#12), an SMTP server with a password and the OCSP responder's
key are sealed under the old key; the rotation runs in its own process while the services keep
enrolling; afterwards the keyring holds the new key alone, nothing stored opens with the old
one, and both the running services and freshly started ones open everything.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import MetaData, String, Text, select
from sqlalchemy.engine import Connection

from services.maintenance.rotation import RotationError, rotate
from shared.config import Settings
from shared.db.session import Database
from shared.keyring import keys_of, ring_text
from shared.security import SecretBox
from tests.support.commands import finished, start_certtoken
from tests.support.notify import add_user, value
from tests.support.smtp import SmtpSink, running_sink
from tests.support.stack import Stack, running_stack

SMTP_LOGIN = ("mailer", "Smtp-Password-7f3a")


async def genkey(admin: httpx.AsyncClient) -> dict[str, Any]:
    body = {"genkey": 1, "keytype": "ec-p256", "ca": "localca", "user": "alice", "realm": "corp"}
    answer = await admin.post("/token/init", json=body)
    assert answer.status_code == 200, answer.text
    detail: dict[str, Any] = answer.json()["detail"]
    assert detail["rollout_state"] == "enrolled", answer.text
    return detail


async def pkcs12_opens(admin: httpx.AsyncClient, tmp_path: Path, detail: dict[str, Any]) -> bool:
    download = await admin.get(f"/token/{detail['serial']}/pkcs12")
    assert download.status_code == 200, download.text
    path = tmp_path / f"{detail['serial']}.p12"
    path.write_bytes(base64.b64decode(download.json()["result"]["value"]["pkcs12"]))
    password = f"pass:{detail['pkcs12_password']}"
    opened = await asyncio.to_thread(
        subprocess.run,
        ["openssl", "pkcs12", "-info", "-nodes", "-in", str(path), "-passin", password],
        capture_output=True,
        text=True,
    )
    return opened.returncode == 0 and "PRIVATE KEY" in opened.stdout


async def mail_goes_out(admin: httpx.AsyncClient, sink: SmtpSink) -> None:
    body = {"identifier": "mail", "recipient": "ops@example.org"}
    assert value(await admin.post("/smtpserver/send_test_email", json=body)) is True
    assert sink.received[-1].authenticated_as == SMTP_LOGIN[0]


async def ocsp_good(stack: Stack, tmp_path: Path, certificate: str) -> bool:
    cacert, leaf = tmp_path / "ca.pem", tmp_path / "leaf.pem"
    async with stack.client() as public:
        cacert.write_text((await public.get("/ca/localca/cacert")).text)
    leaf.write_text(certificate)
    # In a thread: the api answering it runs in this event loop.
    done = await asyncio.to_thread(
        subprocess.run,
        [
            "openssl",
            "ocsp",
            "-issuer",
            str(cacert),
            "-cert",
            str(leaf),
            "-CAfile",
            str(cacert),
            "-url",
            f"{stack.url}/ca/localca/ocsp",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return "Response verify OK" in done.stderr and f"{leaf}: good" in done.stdout


async def sealed_values(settings: Settings) -> list[str]:
    """Every stored text value that looks like a sealed secret (a Fernet token), any table."""

    def scan(conn: Connection) -> list[str]:
        metadata = MetaData()
        metadata.reflect(conn)
        found = []
        for table in metadata.sorted_tables:
            texts = [c for c in table.columns if isinstance(c.type, String | Text)]
            for row in conn.execute(select(*texts)) if texts else []:
                found += [v for v in row if isinstance(v, str) and v.startswith("gAAAAA")]
        return found

    db = Database(settings.resolved_database_url)
    try:
        async with db.engine.connect() as conn:
            return await conn.run_sync(scan)
    finally:
        await db.dispose()


async def keyring_of(path: Path, count: int) -> list[str]:
    """The keyring once it holds *count* keys (bounded wait)."""
    for _ in range(1500):
        keys = keys_of(await asyncio.to_thread(path.read_text))
        if len(keys) == count:
            return keys
        await asyncio.sleep(0.02)
    raise AssertionError(f"the keyring never held {count} keys")


async def test_rotate_while_running_then_the_old_key_is_not_needed(
    prepared_settings: Settings, tmp_path: Path
) -> None:
    settings = prepared_settings
    path = settings.data_dir / "secret_key"
    with running_sink(login=SMTP_LOGIN) as sink:
        async with (
            running_stack(settings) as stack,
            stack.client(await stack.admin_token()) as admin,
        ):
            await add_user(admin)
            before = await genkey(admin)
            server = {"server": sink.host, "port": sink.port, "sender": "ct@example.org"}
            server.update(username=SMTP_LOGIN[0], password=SMTP_LOGIN[1], timeout=5)
            value(await admin.post("/smtpserver/mail", json=server))
            [old_key] = keys_of(path.read_text())
            sealed_before = await sealed_values(settings)
            # The PKCS#12, the SMTP password and the OCSP responder's key.
            assert len(sealed_before) >= 3

            rotation = await start_certtoken(settings, "secrets", "rotate", "--settle", "1")
            new_key, still_old = await keyring_of(path, 2)
            assert still_old == old_key
            # The services follow the keyring file: this one is sealed under the new key.
            during = await genkey(admin)
            done = await finished(rotation)
            assert done.returncode == 0, done.stderr
            assert "rotated the secret key" in done.stdout, done.stdout
            assert keys_of(path.read_text()) == [new_key]
            assert old_key not in path.read_text()

            sealed_after = await sealed_values(settings)
            assert len(sealed_after) >= len(sealed_before) + 1
            new_box, old_box = SecretBox(new_key), SecretBox(old_key)
            for sealed in sealed_after:
                new_box.open(sealed)
                with pytest.raises(ValueError, match="does not verify"):
                    old_box.open(sealed)

            # Access tokens signed with the old key end with it: log in again.
            refused = await admin.get("/token/")
            assert refused.status_code == 401, refused.text
            # Running services open everything with the new key.
            async with stack.client(await stack.admin_token()) as again:
                assert await pkcs12_opens(again, tmp_path, before)
                assert await pkcs12_opens(again, tmp_path, during)
                await mail_goes_out(again, sink)

        # A fresh start knows only the new key, and needs no other.
        async with running_stack(settings) as stack:
            async with stack.client(await stack.admin_token()) as admin:
                assert await pkcs12_opens(admin, tmp_path, before)
                await mail_goes_out(admin, sink)
            assert await ocsp_good(stack, tmp_path, before["certificate"])

    # An interrupted rotation (its new key written, nothing re-sealed yet) is finished by
    # running the command again.
    path.write_text(ring_text(["next-key-0123456789", new_key]))
    db = Database(settings.resolved_database_url)
    try:
        done_again = await rotate(settings, db, settle=0, progress=lambda _: None)
    finally:
        await db.dispose()
    assert done_again.resumed and done_again.resealed == len(sealed_after)
    assert keys_of(path.read_text()) == ["next-key-0123456789"]
    for sealed in await sealed_values(settings):
        SecretBox("next-key-0123456789").open(sealed)


async def test_a_key_given_in_the_environment_is_not_rotated(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", secret_key="from-the-environment")
    db = Database(settings.resolved_database_url)
    try:
        with pytest.raises(RotationError, match="CERTTOKEN_SECRET_KEY_FILE"):
            await rotate(settings, db, settle=0, progress=lambda _: None)
    finally:
        await db.dispose()
