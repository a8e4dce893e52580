"""Expiry notices: one mail per token and threshold, across restarts and racing scanners.

Certificates of a template with ``validity_days: 5`` fall within handlers of 30 and 7 days;
the notices go through the outbox to the notifier, which mails the token owner.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from services.ca_worker.ca_create import create_local_ca
from services.ca_worker.expiry import ExpiryScanner
from services.cli import cmd_ca
from shared.config import Settings
from shared.db.models import EventHandler, ExpiryNotice, OutboxMessage, Token, utcnow
from shared.db.session import Database
from shared.messaging.memory import MemoryBroker
from shared.messaging.outbox import OutboxRelay
from tests.support.notify import add_handler, add_smtp_server, add_user, value
from tests.support.pki import make_csr
from tests.support.smtp import SmtpSink
from tests.support.stack import Stack, prepare, running_stack, settings_for

NOTICE = {"emailconfig": "mail", "To": "tokenowner"}
SUBJECT = "{threshold_days} days: certificate {serial} ends {not_after} ({days_left} left)"


def _scanner(db: Database, broker: MemoryBroker) -> ExpiryScanner:
    return ExpiryScanner(db, OutboxRelay(db, broker), period_seconds=3600, ca_warning_days=90)


async def _events(db: Database, event_type: str) -> list[dict[str, Any]]:
    """The data of the events of *event_type* still in the outbox."""
    async with db.read() as session:
        bodies = await session.scalars(
            select(OutboxMessage.body).where(OutboxMessage.message_type == event_type)
        )
        return [json.loads(body)["data"] for body in bodies]


async def _recorded(db: Database, kind: str) -> list[ExpiryNotice]:
    """The notices recorded as sent, of tokens or of CAs."""
    async with db.read() as session:
        return list(
            (await session.scalars(select(ExpiryNotice).where(ExpiryNotice.kind == kind))).all()
        )


# --- the scan against the database alone: racing scanners, renewals, what is skipped ----------


async def _seed(db: Database) -> None:
    now = utcnow()

    def token(serial: str, days: float, state: str = "enrolled", **info: Any) -> Token:
        return Token(
            serial=serial,
            rollout_state=state,
            username="alice",
            realm="corp",
            ca="localca",
            certificate_id=f"issuer/{serial}",
            info={"certificate_not_after": (now + timedelta(days=days)).isoformat(), **info},
        )

    async with db.write() as session:
        for days in (30, 7):
            session.add(
                EventHandler(
                    name=f"{days} days",
                    events=["certificate_expiring"],
                    handlermodule="UserNotification",
                    action="sendmail",
                    conditions={"threshold_days": str(days)},
                    options={"To": "tokenowner"},
                )
            )
        session.add_all(
            [
                token("CRTSOON1", 5),
                token("CRTSOON2", 5),
                token("CRTMONTH", 20),
                token("CRTFAR", 60),
                token("CRTOFF", 5, disabled=True),
                token("CRTREVOKED", 5, state="revoked"),
                token("CRTPAST", -1),
            ]
        )


async def test_racing_scanners_send_each_notice_once(prepared_settings: Settings) -> None:
    url = prepared_settings.resolved_database_url
    broker = MemoryBroker()
    await broker.start()
    dbs = [Database(url), Database(url)]
    try:
        await _seed(dbs[0])
        scanners = [_scanner(db, broker) for db in dbs]
        sent = await asyncio.gather(*(s.scan() for s in scanners), scanners[0].scan())
        expected = {
            ("CRTSOON1", 30),
            ("CRTSOON1", 7),
            ("CRTSOON2", 30),
            ("CRTSOON2", 7),
            ("CRTMONTH", 30),
        }
        assert sum(sent) == len(expected)
        events = await _events(dbs[0], "certificate_expiring")
        assert sorted((e["serial"], e["threshold_days"]) for e in events) == sorted(expected)
        soon = next(e for e in events if e["serial"] == "CRTSOON1" and e["threshold_days"] == 7)
        assert soon["days_left"] == 4
        assert (soon["username"], soon["realm"], soon["ca"]) == ("alice", "corp", "localca")
        assert soon["rollout_state"] == "enrolled"
        assert soon["not_after"].startswith(soon["certificate_not_after"][:16])

        assert await asyncio.gather(*(s.scan() for s in scanners)) == [0, 0]

        # A renewed certificate (another id, a later end) is notified afresh.
        renewed = (utcnow() + timedelta(days=20)).isoformat()
        async with dbs[1].write() as session:
            await session.execute(
                update(Token)
                .where(Token.serial == "CRTSOON1")
                .values(certificate_id="issuer/renewed", info={"certificate_not_after": renewed})
            )
        assert await scanners[1].scan() == 1
        async with dbs[0].read() as session:
            rows = (await session.scalars(select(ExpiryNotice))).all()
        assert len(rows) == len(expected) + 1
        assert {
            (r.subject, r.threshold_days) for r in rows if r.certificate == "issuer/renewed"
        } == {("CRTSOON1", 30)}
    finally:
        await broker.close()
        for db in dbs:
            await db.dispose()


# --- the whole system: mails to the owner, a restart, RabbitMQ --------------------------------


@pytest.fixture(params=["memory", pytest.param("amqp", marks=pytest.mark.rabbitmq)])
async def expiry_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """A prepared system scanning every 0.2 s, on each broker."""
    overrides: dict[str, Any] = {"expiry_scan_seconds": 0.2}
    if request.param == "amqp":
        overrides["amqp_url"] = request.getfixturevalue("amqp_url")
    settings = settings_for(tmp_path / "data", **overrides)
    await prepare(settings)
    return settings


async def _enroll(stack: Stack, token: str, cn: str) -> str:
    async with stack.client(token) as client:
        answer = await client.post(
            "/token/init",
            json={
                "type": "certificate",
                "request": make_csr(cn),
                "ca": "localca",
                "template": "short",
                "user": "alice",
                "realm": "corp",
            },
        )
    assert answer.status_code == 200, answer.text
    detail = answer.json()["detail"]
    assert detail["rollout_state"] == "enrolled", answer.text
    serial: str = detail["serial"]
    return serial


def _notices(sink: SmtpSink) -> list[tuple[str, str]]:
    """(threshold, serial) of every notice mailed, in arrival order."""
    found = []
    for mail in sink.mails_to("alice@example.org"):
        threshold, _, rest = mail.subject.strip().partition(" days: certificate ")
        found.append((threshold, rest.split(" ")[0]))
    return found


@pytest.mark.smtp
async def test_one_mail_per_token_and_threshold_across_a_restart(
    expiry_settings: Settings, smtp_sink: SmtpSink
) -> None:
    async with running_stack(expiry_settings) as stack:
        token = await stack.admin_token()
        async with stack.client(token) as client:
            await add_user(client)
            await add_smtp_server(client, "mail", smtp_sink)
            made = await client.post(
                "/caconnector/localca/templates/short", json={"validity_days": 5}
            )
            assert made.status_code == 200, made.text
            for days in (30, 7):
                await add_handler(
                    client,
                    {**NOTICE, "subject": SUBJECT, "body": "Renew {serial}, {givenname}."},
                    name=f"{days} days",
                    event="certificate_expiring",
                    conditions={"threshold_days": str(days)},
                )
            # The dry run shows which handler acts on which notice, and why the other does not.
            dry = value(
                await client.post(
                    "/event/test",
                    json={
                        "event": "certificate_expiring",
                        "data": {
                            "serial": "CRT1",
                            "username": "alice",
                            "realm": "corp",
                            "threshold_days": 7,
                            "days_left": 6,
                            "not_after": "2030-01-01",
                        },
                    },
                )
            )
            assert [m["name"] for m in dry["matched"]] == ["7 days"]
            assert (
                dry["not_matched"][0]["reason"]
                == "threshold_days: the notice is for 7 days, not 30"
            )
            assert dry["mails"][0]["subject"].startswith("7 days: certificate CRT1 ends 2030-01-01")

        serials = [await _enroll(stack, token, f"alice-{i}") for i in range(2)]
        # A second scanner (another worker's, with its own engine) races the running one.
        other = Database(expiry_settings.resolved_database_url)
        try:
            racer = ExpiryScanner(
                other, stack.worker.relay, period_seconds=3600, ca_warning_days=90
            )
            await asyncio.gather(racer.scan(), stack.worker.expiry.scan())
        finally:
            await other.dispose()
        await smtp_sink.wait_for(4)
        expected = sorted((str(d), s) for s in serials for d in (30, 7))
        assert sorted(_notices(smtp_sink)) == expected
        mail = smtp_sink.mails_to("alice@example.org")[0]
        assert "Renew" in mail.body and "Alice" in mail.body
        assert "(4 left)" in mail.subject

    # The same data dir (and broker) again: the start's scan and later ones send nothing old.
    async with running_stack(expiry_settings) as stack:
        assert await stack.worker.expiry.scan() == 0
        token = await stack.admin_token()
        late = await _enroll(stack, token, "alice-late")
        await smtp_sink.wait_for(6)
        assert await stack.worker.expiry.scan() == 0
        assert sorted(_notices(smtp_sink)) == sorted([*expected, ("30", late), ("7", late)])
        assert len(await _recorded(stack.db, "token")) == 6


# --- CA certificates ---------------------------------------------------------------------------


@pytest.mark.smtp
async def test_a_ca_near_its_end_shows_in_metrics_and_is_notified_once(
    tmp_path: Path, smtp_sink: SmtpSink, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(tmp_path / "data")
    await prepare(settings)
    async with running_stack(settings) as stack:
        token = await stack.admin_token()
        async with stack.client(token) as client:
            await add_smtp_server(client, "mail", smtp_sink)
            await add_handler(
                client,
                {
                    "emailconfig": "mail",
                    "To": "email",
                    "To email": "pki@example.org",
                    "subject": "CA {ca} ends in {days_left} days ({threshold_days})",
                },
                name="ca admin",
                event="ca_expiring",
            )
            # Made while the system runs: the scan at the start has not seen it.
            await create_local_ca(settings, stack.db, "shortca", days=20)
            assert await stack.worker.expiry.scan() == 1
            assert await stack.worker.expiry.scan() == 0
            [mail] = await smtp_sink.wait_for(1)
            assert mail.subject == "CA shortca ends in 19 days (90)"
            metrics = (await client.get("/metrics")).text
            ready = await client.get("/readyz")
        assert ready.status_code == 200
        gauges = {
            line.split("{")[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("certtoken_ca_certificate_days_left{")
        }
        assert 19 < gauges['ca="shortca"'] <= 20
        assert gauges['ca="localca"'] > 3000
        [notice] = await _recorded(stack.db, "ca")
        assert (notice.subject, notice.threshold_days) == ("shortca", 90)
    await cmd_ca(settings, argparse.Namespace(ca_command="list"))
    listed = capsys.readouterr().out
    rows = {line.split("\t")[0]: line.split("\t")[-1] for line in listed.splitlines()}
    assert rows["shortca"] == "19 days left (expiring: within 90)"
    assert rows["localca"].endswith(" days left")
