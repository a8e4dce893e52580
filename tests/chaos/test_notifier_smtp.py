"""Drill: a notifier SIGKILLed while it sends, then the SMTP server down for 30 s and back.

Two notifiers mail every enrollment's ``token_init``. One is killed while mails flow (and
started again); then the SMTP server stops for OUTAGE seconds and starts on the same port.
Every mail must arrive once. The notifier's one duplicate window (services/notifier/
mailer.py) is a send the server accepted whose ``sent`` was not yet committed: a kill there,
or a server that goes away between its ``250`` and the client reading it (RFC 1047). So a
duplicate is allowed only up to the deliveries in flight (claimed, status ``sending``) at the
kill and at the stop; each is printed.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.deployment import DRILL_MARKS, NOTIFIER, Deployment, Verdict, deployed

pytestmark = DRILL_MARKS

OUTAGE = 30.0  # what issue 10 asks
# Deferred mails are retried every 0.5, 1, then 2 s: the attempts span (0.5 + 1 + 2 * 38 s)
# outlasts the outage, and a mail waits at most 2 s once the server is back. The defaults
# (1, 5, 30, 120 s; 6 attempts) ride out 30 s too, but take up to 30 s more to drain.
RETRY_ENV = {
    "CERTTOKEN_RETRY_DELAYS_MS": json.dumps([500, 1000, 2000]),
    "CERTTOKEN_MAX_ATTEMPTS": "40",
}
# Mails accepted before the kill: the notifiers are sending.
SENT_BEFORE_KILL = 50
SENDING = "SELECT count(*) FROM mail_delivery WHERE status = 'sending'"


def sent_by(deployment: Deployment, name: str) -> int:
    """Mails process *name* recorded as sent, from its log."""
    return (deployment.procs.logdir / f"{name}.log").read_text().count('"mail sent"')


async def test_notifier_killed_while_sending_then_smtp_down(
    tmp_path: Path, postgres_url: str, drill_size: int, report: Callable[[Verdict], None]
) -> None:
    with deployed(tmp_path, postgres_url, env=RETRY_ENV) as deployment:
        victim = deployment.names(NOTIFIER)[0]
        sink = deployment.sink
        window: dict[str, int] = {}

        async def fault() -> None:
            while True:
                if sink.count() >= SENT_BEFORE_KILL and sent_by(deployment, victim):
                    break
                await asyncio.sleep(0.02)
            # Killed and started again at once; the claims it held stay until their lease ends.
            await asyncio.to_thread(deployment.restart, victim, signal.SIGKILL, wait=False)
            window["in flight at the kill"] = await deployment.scalar(SENDING)
            await asyncio.to_thread(deployment.wait_ready, victim)
            before = await deployment.scalar(SENDING)
            sink.stop()
            window["in flight at the stop"] = max(before, await deployment.scalar(SENDING))
            stopped = time.monotonic()
            await asyncio.sleep(OUTAGE)
            sink.start()
            window["seconds down"] = round(time.monotonic() - stopped)

        verdict = await deployment.drill(
            "notifier SIGKILL + SMTP down 30s", drill_size, fault, start_at=0.05
        )
    report(verdict)
    allowed = window["in flight at the kill"] + window["in flight at the stop"]
    print(f"duplicate window: {window}; copies of a delivery: {verdict.window_duplicates}")
    assert verdict.accepted == drill_size, verdict
    assert verdict.lost == 0, verdict
    assert verdict.duplicate_certs == 0, verdict
    assert verdict.missing_mails == 0, verdict
    assert verdict.duplicate_mails == verdict.window_duplicates, verdict  # none outside it
    assert verdict.window_duplicates <= allowed, (verdict, window)
