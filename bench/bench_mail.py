"""Notifier benchmark: matching ``token_init`` events in, mails out to a local SMTP sink.

Run: ``.venv/bin/python bench/bench_mail.py`` (or ``make bench``). Needs RabbitMQ (and
PostgreSQL for ``--database postgres``). The notifier runs as its own process
(``certtoken notifier``), the SMTP sink (aiosmtpd) as another; this process publishes the
events and watches the delivery records. Prints mails/s from the first publish to the last
``sent`` record, the notifier's CPU time and peak RSS, and what the sink received.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _procstat import cpu_seconds, peak_rss_mib
from _system import ADMIN, postgres_database
from sqlalchemy import func, select

from shared.db.models import MailDelivery
from shared.db.session import Database
from shared.messaging.amqp import AmqpBroker
from tests.support.amqp import vhost_url
from tests.support.notify import publish, token_event
from tests.support.procs import Processes, free_port, service_env


def run_sink(port: int) -> None:
    """The SMTP sink process: count accepted mails; print the figures on SIGTERM."""
    from aiosmtpd.controller import Controller

    seen: list[str] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            for line in envelope.content.split(b"\r\n"):
                if line.lower().startswith(b"message-id:"):
                    seen.append(line.decode().strip())
                    break
            return "250 2.0.0 accepted"

    stop = {signal.SIGTERM, signal.SIGINT}
    # Blocked before the server's thread starts, so that sigwait below receives them.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    signal.sigwait(stop)
    controller.stop()
    print(json.dumps({"received": len(seen), "unique": len(set(seen))}), flush=True)


def configure(procs: Processes, sink_port: int) -> None:
    """A user, an SMTP server and a handler on token_init/pending, through the api."""
    port = free_port()
    procs.start("api", "api", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    procs.wait_http("api", f"{url}/readyz")
    token = httpx.post(f"{url}/auth", json=ADMIN).json()["result"]["value"]["token"]
    headers = {"Authorization": token}
    for path, body in [
        (
            "/user/",
            {
                "user": "alice",
                "realm": "corp",
                "email": "alice@example.org",
                "givenname": "Alice",
                "surname": "Liddell",
            },
        ),
        (
            "/smtpserver/sink",
            {"server": "127.0.0.1", "port": sink_port, "sender": "bench@example.org"},
        ),
        (
            "/event",
            {
                "name": "pending",
                "event": "token_init",
                "handlermodule": "UserNotification",
                "action": "sendmail",
                "conditions": {"rollout_state": "pending"},
                "options": {
                    "emailconfig": "sink",
                    "To": "tokenowner",
                    "subject": "Certificate request {serial} is {rollout_state}",
                    "body": "Dear {givenname} {surname}, request {serial} awaits approval.",
                },
            },
        ),
    ]:
        answer = httpx.post(f"{url}{path}", json=body, headers=headers)
        answer.raise_for_status()
    # The api is not part of the measurement: stop it so that it takes no CPU.
    procs.stop("api")


async def sent(db: Database) -> int:
    """Delivery records with status ``sent``."""
    async with db.read() as session:
        query = select(func.count()).where(MailDelivery.status == "sent")
        return int(await session.scalar(query) or 0)


async def measure(procs: Processes, database_url: str, events: int) -> dict[str, float]:
    """Publish *events* matching events; time until all their mails are recorded sent."""
    port = free_port()
    procs.start("notifier", "notifier", extra_env={"CERTTOKEN_HEALTH_PORT": str(port)})
    procs.wait_http("notifier", f"http://127.0.0.1:{port}/readyz")
    pid = procs.running["notifier"].pid
    broker = AmqpBroker(procs.env["CERTTOKEN_AMQP_URL"])
    await broker.start()
    db = Database(database_url)
    batch = [token_event(serial=f"CRT{i:08X}") for i in range(events)]
    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    try:
        for start in range(0, events, 200):
            await asyncio.gather(*(publish(broker, e) for e in batch[start : start + 200]))
        published = time.perf_counter() - started
        while (done := await sent(db)) < events:
            if time.perf_counter() - started > 600:
                raise TimeoutError(f"only {done} of {events} mails after 600 s")
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
    finally:
        await broker.close()
        await db.dispose()
    return {
        "elapsed": elapsed,
        "published": published,
        "cpu": cpu_seconds(pid) - cpu_before,
        "rss": peak_rss_mib(pid),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000, help="matching events to publish")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--quick", action="store_true", help="200 events (for make bench)")
    parser.add_argument("--log-level", default="WARNING", help="the notifier's log level")
    parser.add_argument("--sink", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        run_sink(args.sink)
        return
    events = 200 if args.quick else args.events

    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="certtoken-bench-")))
        amqp = stack.enter_context(vhost_url())
        database_url = f"sqlite+aiosqlite:///{workdir / 'certtoken.db'}"
        if args.database == "postgres":
            database_url = stack.enter_context(postgres_database())
        env = service_env(workdir / "data", amqp, database_url, CERTTOKEN_LOG_LEVEL=args.log_level)
        procs = Processes(env, workdir)
        sink_port = free_port()
        sink = subprocess.Popen(
            [sys.executable, __file__, "--sink", str(sink_port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert sink.stdout is not None
            assert sink.stdout.readline().strip() == "ready"
            for cli in (
                ("db", "upgrade"),
                ("admin", "add", ADMIN["username"], "-p", ADMIN["password"]),
            ):
                done = procs.cli(*cli)
                if done.returncode:
                    raise SystemExit(done.stderr)
            configure(procs, sink_port)
            figures = asyncio.run(measure(procs, database_url, events))
        finally:
            procs.stop_all()
            sink.send_signal(signal.SIGTERM)
            out, _ = sink.communicate(timeout=30)
        received = json.loads(out.strip().splitlines()[-1])

    rate = events / figures["elapsed"]
    print(
        f"notifier benchmark: {events} matching token_init events, {args.database}, "
        f"RabbitMQ, log level {args.log_level}"
    )
    print(f"  mails/s            {rate:8.1f}   (first publish to last 'sent' record)")
    elapsed, published = figures["elapsed"], figures["published"]
    print(f"  elapsed            {elapsed:8.2f} s (publishing took {published:.2f} s)")
    print(f"  notifier CPU       {figures['cpu']:8.2f} s   peak RSS {figures['rss']:.0f} MiB")
    print(
        f"  sink received      {received['received']:8d}   unique Message-IDs {received['unique']}"
    )


if __name__ == "__main__":
    main()
