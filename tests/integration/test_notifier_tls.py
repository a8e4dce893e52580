"""STARTTLS (privacyIDEA's ``tls``), implicit TLS and AUTH against a real aiosmtpd with a certificate made here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.notify import (
    add_handler,
    add_smtp_server,
    add_user,
    publish,
    token_event,
    value,
    wait_deliveries,
)
from tests.support.smtp import SmtpSink, TlsFiles, running_sink, tls_files
from tests.support.stack import Stack, prepare, running_stack, settings_for

pytestmark = [
    pytest.mark.smtp,
    # aiosmtpd does not count implicit TLS as TLS for AUTH; the sink allows AUTH there.
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS"),
]

LOGIN = ("mailer", "s3cret-mail-pass")


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    """A test CA and a server certificate for 127.0.0.1."""
    return tls_files(tmp_path / "tls")


@asynccontextmanager
async def system(
    tmp_path: Path, ca_file: Path | None
) -> AsyncIterator[tuple[Stack, httpx.AsyncClient]]:
    """A system that trusts *ca_file* for SMTP, with an administrator's client."""
    settings = settings_for(tmp_path / "data", smtp_ca_file=ca_file)
    await prepare(settings)
    async with (
        running_stack(settings) as stack,
        stack.client(await stack.admin_token()) as client,
    ):
        yield stack, client


async def _deliver_one(stack: Stack, admin: httpx.AsyncClient, sink: SmtpSink) -> None:
    await add_user(admin)
    await add_handler(admin, {"emailconfig": "mail", "To": "tokenowner"})
    event = token_event()
    await publish(stack.broker, event)
    await wait_deliveries(admin, 1, event_id=event.id, status="sent")


async def test_starttls_and_auth(tmp_path: Path, tls: TlsFiles) -> None:
    with running_sink(starttls=tls.server_context, login=LOGIN) as sink:
        async with system(tmp_path, tls.ca_file) as (stack, admin):
            await add_smtp_server(
                admin, "mail", sink, tls=True, username=LOGIN[0], password=LOGIN[1]
            )
            await _deliver_one(stack, admin, sink)
            [mail] = sink.received
            assert mail.authenticated_as == "mailer"
            assert mail.rcpt_tos == ["alice@example.org"]

            test = await admin.post(
                "/smtpserver/send_test_email",
                json={"identifier": "mail", "recipient": "ops@example.org"},
            )
            assert value(test) is True
            assert len(sink.mails_to("ops@example.org")) == 1

            # The wrong password: 535 from the server, a permanent failure.
            value(await admin.post("/smtpserver/mail", json=_settings(sink, password="wrong")))
            refused = await admin.post(
                "/smtpserver/send_test_email",
                json={"identifier": "mail", "recipient": "ops@example.org"},
            )
            assert refused.status_code == 200
            assert value(refused) is False
            assert "535" in refused.json()["detail"]["message"]
            assert refused.json()["detail"]["permanent"] is True


async def test_a_server_requiring_starttls_refuses_plain_text(
    tmp_path: Path, tls: TlsFiles
) -> None:
    with running_sink(starttls=tls.server_context, login=LOGIN) as sink:
        async with system(tmp_path, tls.ca_file) as (stack, admin):
            await add_smtp_server(admin, "mail", sink, username=LOGIN[0], password=LOGIN[1])
            await add_user(admin)
            await add_handler(admin, {"emailconfig": "mail", "To": "tokenowner"})
            event = token_event()
            await publish(stack.broker, event)
            [failed] = await wait_deliveries(admin, 1, event_id=event.id, status="failed")
            assert failed["permanent"] is True
            assert sink.count() == 0


async def test_implicit_tls(tmp_path: Path, tls: TlsFiles) -> None:
    with running_sink(implicit_tls=tls.server_context, login=LOGIN) as sink:
        async with system(tmp_path, tls.ca_file) as (stack, admin):
            await add_smtp_server(
                admin, "mail", sink, implicit_tls=True, username=LOGIN[0], password=LOGIN[1]
            )
            await _deliver_one(stack, admin, sink)
            assert [m.authenticated_as for m in sink.received] == ["mailer"]
            shown = value(await admin.get("/smtpserver/"))["mail"]
            assert (shown["tls"], shown["implicit_tls"]) == (False, True)


async def test_an_smtps_url_means_implicit_tls(tmp_path: Path, tls: TlsFiles) -> None:
    """privacyIDEA's way: ``server=smtps://host:port``, its port winning over ``port``."""
    with running_sink(implicit_tls=tls.server_context, login=LOGIN) as sink:
        async with system(tmp_path, tls.ca_file) as (stack, admin):
            server = f"smtps://{sink.host}:{sink.port}"
            params = {"server": server, "port": 25, "tls": True, "password": LOGIN[1]}
            value(await admin.post("/smtpserver/mail", json=_settings(sink, **params)))
            await _deliver_one(stack, admin, sink)
            assert [m.authenticated_as for m in sink.received] == ["mailer"]
            assert value(await admin.get("/smtpserver/"))["mail"]["server"] == server


async def test_an_untrusted_certificate_is_a_permanent_failure(
    tmp_path: Path, tls: TlsFiles
) -> None:
    with running_sink(starttls=tls.server_context) as sink:
        async with system(tmp_path, None) as (stack, admin):
            await add_smtp_server(admin, "mail", sink, starttls=True)
            await add_user(admin)
            await add_handler(admin, {"emailconfig": "mail", "To": "tokenowner"})
            event = token_event()
            await publish(stack.broker, event)
            [failed] = await wait_deliveries(admin, 1, event_id=event.id, status="failed")
            assert failed["permanent"] is True
            assert "certificate" in failed["error"].lower()
            assert sink.count() == 0


def _settings(sink: SmtpSink, **extra: object) -> dict[str, object]:
    return {
        "server": sink.host,
        "port": sink.port,
        "sender": "certtoken@example.org",
        "tls": True,
        "username": LOGIN[0],
        **extra,
    }
