"""Several api, ca_worker and notifier processes on one database and RabbitMQ, and drill verdicts.

``deployed()`` prepares a system as an operator would (migrate, a local CA, an admin, users, an
SMTP server that is a real aiosmtpd sink, handlers that mail every ``token_init`` of a pending
or enrolled token) and starts the services as separate processes. ``Deployment.enroll`` spreads
enrollments over the apis; ``Deployment.verdict`` reads the database and the sink and says what
was lost or doubled.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import pool, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.domain import RolloutState
from tests.support.amqp import vhost_url
from tests.support.pki import make_csr
from tests.support.procs import Processes, free_port, service_env
from tests.support.smtp import SmtpSink

# What a drill on this deployment talks to, as markers (`.ci/run` checks that each kind ran).
DRILL_MARKS = [pytest.mark.chaos, pytest.mark.rabbitmq, pytest.mark.postgres, pytest.mark.smtp]

ADMIN = {"username": "admin", "password": "admin-password-1"}
CA = "localca"
REALM = "corp"
MAIL_SERVER = "mail"
# States after which nothing more happens to a token without an administrator.
FINAL_STATES = frozenset(
    s.value
    for s in (RolloutState.ENROLLED, RolloutState.FAILED, RolloutState.DENIED, RolloutState.REVOKED)
)
# token_init events of these states mail the owner, one handler each (a condition has one value).
MAILED_STATES = (RolloutState.PENDING.value, RolloutState.ENROLLED.value)
# Transient errors of a database that is restarting: the reader waits and asks again.
_DB_DOWN = (OperationalError, DBAPIError, OSError, ConnectionError)
# A drill's clients retry an outage's answer this long, this often.
RETRY_FOR, RETRY_PAUSE = 60.0, 0.25

API, CA_WORKER, NOTIFIER = "api", "ca-worker", "notifier"


def user_name(index: int) -> str:
    """The login of the *index*-th drill user."""
    return f"user{index:03d}"


def user_email(index: int) -> str:
    """The e-mail address of the *index*-th drill user."""
    return f"{user_name(index)}@example.org"


@dataclass
class Submission:
    """What a load of enrollments got: accepted serials, by api, and refusals by cause."""

    accepted: list[str] = field(default_factory=list)
    by_api: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)
    states: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


@dataclass(frozen=True)
class Verdict:
    """What a drill ended with; ``ok`` when nothing was lost or doubled."""

    name: str
    accepted: int
    refused: int
    lost: int
    duplicate_certs: int
    duplicate_mails: int
    missing_mails: int
    # Of the duplicates, copies of one delivery (same Message-ID): the notifier's documented
    # window between the SMTP server's 250 and the commit of ``sent`` (services/notifier/mailer.py).
    window_duplicates: int
    drain_seconds: float
    states: dict[str, int]
    # Answers of 500: a fault must end in a clear refusal (503) or an answer, never a crash.
    server_errors: int = 0
    # Requests retried after an outage's answer, under their Idempotency-Key.
    retried: int = 0
    # Tokens no answer named: a retry that made a second token, or a request given up on.
    unanswered: int = 0
    # Why mails are missing (examples), for the failure message; not part of the line.
    detail: str = ""

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing doubled, every mail sent."""
        outside_window = self.duplicate_mails - self.window_duplicates
        return not (
            self.lost
            or self.duplicate_certs
            or outside_window
            or self.missing_mails
            or self.server_errors
            or self.unanswered
        )

    def line(self) -> str:
        """The one summary line a drill prints."""
        states = ",".join(f"{k}:{v}" for k, v in sorted(self.states.items()))
        return (
            f"DRILL {self.name}: accepted={self.accepted} lost={self.lost} "
            f"duplicate_certs={self.duplicate_certs} duplicate_mails={self.duplicate_mails} "
            f"drain={self.drain_seconds:.1f}s (in_window={self.window_duplicates} "
            f"refused={self.refused} retried={self.retried} unanswered={self.unanswered} "
            f"server_errors={self.server_errors} "
            f"missing_mails={self.missing_mails} states={states})"
        )

    def __str__(self) -> str:
        return f"{self.line()} {self.detail}".rstrip()


@dataclass
class Deployment:
    """A prepared, running system of several processes per service."""

    procs: Processes
    sink: SmtpSink
    database_url: str
    apis: dict[str, str] = field(default_factory=dict)
    health: dict[str, str] = field(default_factory=dict)
    roles: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    admin_token: str = ""
    users: int = 0

    # --- processes -------------------------------------------------------------------------

    def launch(self, name: str, role: str, extra_env: dict[str, str] | None = None) -> None:
        """Start process *name* of *role* (api, ca-worker, notifier); do not wait for it."""
        env = dict(extra_env or {})
        self.roles[name] = (role, env)
        port = free_port()
        if role == API:
            self.procs.start(name, API, "--port", str(port), extra_env=env)
            self.apis[name] = f"http://127.0.0.1:{port}"
            self.health[name] = f"{self.apis[name]}/readyz"
        else:
            self.procs.start(name, role, extra_env={**env, "CERTTOKEN_HEALTH_PORT": str(port)})
            self.health[name] = f"http://127.0.0.1:{port}/readyz"

    def wait_ready(self, *names: str, timeout: float = 60) -> None:
        """Wait until each named process (all when none are named) answers ready."""
        for name in names or tuple(self.procs.running):
            self.procs.wait_http(name, self.health[name], timeout)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Signal process *name* and wait for it to end; its exit status."""
        return self.procs.stop(name, sig)

    def restart(self, name: str, sig: int = signal.SIGKILL, *, wait: bool = True) -> None:
        """Kill process *name* with *sig* and start it again with the same role and settings."""
        role, env = self.roles[name]
        self.kill(name, sig)
        self.launch(name, role, env)
        if wait:
            self.wait_ready(name)

    def names(self, role: str) -> list[str]:
        """The processes of *role*, in start order."""
        return [name for name, (r, _) in self.roles.items() if r == role]

    # --- HTTP -------------------------------------------------------------------------------

    def client(self, api: str, timeout: float = 60) -> httpx.AsyncClient:
        """An admin client of api process *api*."""
        return httpx.AsyncClient(
            base_url=self.apis[api], headers={"Authorization": self.admin_token}, timeout=timeout
        )

    async def enroll(
        self,
        count: int,
        *,
        concurrency: int = 32,
        template: str = "",
        apis: Sequence[str] = (),
        retry_for: float = 0.0,
    ) -> Submission:
        """POST *count* enrollments round-robin over *apis* (all by default); what they got.

        An outage's answer is retried for *retry_for* seconds before it counts as refused."""
        targets = list(apis or self.apis)
        clients = {name: self.client(name) for name in targets}
        gate = asyncio.Semaphore(concurrency)
        done = Submission()
        started = time.monotonic()

        async def one(i: int) -> None:
            api = targets[i % len(targets)]
            body = {
                "type": "certificate",
                "request": make_csr(f"drill{i}"),
                "ca": CA,
                "user": user_name(i % self.users),
                "realm": REALM,
            }
            if template:
                body["template"] = template
            # A careful client: it retries an outage (503, a dropped connection) under one
            # Idempotency-Key, so a retry of a request that was stored answers the same token.
            headers = {"Idempotency-Key": f"drill-{i}-{uuid.uuid4().hex}"}
            deadline = time.monotonic() + retry_for
            async with gate:
                while True:
                    try:
                        answer = await clients[api].post("/token/init", json=body, headers=headers)
                    except httpx.HTTPError as exc:
                        cause = type(exc).__name__
                    else:
                        if answer.status_code != 503:
                            break
                        cause = "http 503"
                    if time.monotonic() >= deadline:
                        done.refused[cause] += 1
                        return
                    done.retried[cause] += 1
                    await asyncio.sleep(RETRY_PAUSE)
            if answer.status_code != 200:
                done.refused[f"http {answer.status_code}"] += 1
                return
            detail = answer.json()["detail"]
            done.accepted.append(detail["serial"])
            done.by_api[api] += 1
            done.states[detail["rollout_state"]] += 1

        try:
            await asyncio.gather(*(one(i) for i in range(count)))
        finally:
            for client in clients.values():
                await client.aclose()
        done.seconds = time.monotonic() - started
        return done

    # --- the database -----------------------------------------------------------------------

    def engine(self) -> AsyncEngine:
        """A connection-per-use engine on the deployment's database."""
        return create_async_engine(self.database_url, poolclass=pool.NullPool)

    async def scalar(self, sql: str, **params: Any) -> Any:
        """One value of *sql* (the first column of its first row), waiting through a restart."""
        found = await self.rows(sql, **params)
        return found[0][0] if found else None

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        """All rows of *sql*, waiting through a database restart."""
        engine = self.engine()
        try:
            while True:
                try:
                    async with engine.connect() as conn:
                        return list(await conn.execute(text(sql), params))
                except _DB_DOWN:
                    await asyncio.sleep(0.2)
        finally:
            await engine.dispose()

    async def open_tokens(self) -> int:
        """Tokens not (yet) in a final state."""
        finals = ",".join(f"'{s}'" for s in sorted(FINAL_STATES))
        count: int = await self.scalar(
            f"SELECT count(*) FROM token WHERE rollout_state NOT IN ({finals})"
        )
        return count

    async def expected_mails(self) -> int:
        """Mails the handlers owe: one per token that reached a mailed state."""
        # A token enrolled and later revoked was mailed when it was enrolled.
        count: int = await self.scalar(
            "SELECT count(*) FROM token WHERE rollout_state IN ('pending','enrolled','revoked')"
        )
        return count

    async def drain(self, within: float = 120) -> float:
        """Wait until every token is final and every mail owed arrived; the seconds it took."""
        started = time.monotonic()
        deadline = started + within
        while time.monotonic() < deadline:
            # Distinct mails: a duplicate must not stand in for a mail still owed.
            if (
                await self.open_tokens() == 0
                and self.sink.distinct() >= await self.expected_mails()
            ):
                break
            await asyncio.sleep(0.2)
        return time.monotonic() - started

    async def signed_by(self) -> Counter[str]:
        """How many outcomes each ca_worker recorded, from its log."""
        return Counter(
            {
                name: (self.procs.logdir / f"{name}.log").read_text().count("outcome recorded")
                for name in self.names(CA_WORKER)
            }
        )

    async def drill(
        self,
        name: str,
        size: int,
        fault: Callable[[], Awaitable[None]],
        *,
        start_at: float = 0.2,
        within: float | None = None,
        concurrency: int = 32,
    ) -> Verdict:
        """Put *size* enrollments in flight, run *fault* once a *start_at* share is stored,
        wait for the rest to drain (timed from the fault's end) and judge."""
        load = asyncio.create_task(self.enroll(size, concurrency=concurrency, retry_for=RETRY_FOR))
        try:
            while not load.done():
                if await self.scalar("SELECT count(*) FROM token") >= size * start_at:
                    break
                await asyncio.sleep(0.05)
            await fault()
            started = time.monotonic()
            submission = await load
        finally:
            if not load.done():
                load.cancel()
        await self.drain(within if within is not None else 60 + size * 0.05)
        return await self.verdict(name, submission, time.monotonic() - started)

    async def duplicate_certificates(self) -> int:
        """Certificates issued beyond one per token, in the tokens and the CA's issued table."""
        queries = (
            # Two issued rows for one token, or one certificate serial issued twice by a CA.
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM issued_certificate "
            "GROUP BY token_serial HAVING count(*) > 1) d",
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM issued_certificate "
            "GROUP BY ca, serial_number HAVING count(*) > 1) d",
            # An issued certificate its token does not hold: the token got another one.
            "SELECT count(*) FROM issued_certificate i LEFT JOIN token t "
            "ON t.serial = i.token_serial WHERE t.serial IS NULL OR t.certificate <> i.certificate",
            # One certificate held by two tokens.
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM token "
            "WHERE certificate <> '' GROUP BY certificate HAVING count(*) > 1) d",
        )
        return sum([int(await self.scalar(q)) for q in queries])

    async def verdict(self, name: str, submission: Submission, drain_seconds: float) -> Verdict:
        """What the drill ended with (call after :meth:`drain`)."""
        tokens = {
            row[0]: row[1] for row in await self.rows("SELECT serial, rollout_state FROM token")
        }
        accepted = set(submission.accepted)
        lost = sum(1 for s in accepted if tokens.get(s) not in FINAL_STATES)
        # Tokens whose answer never came (a connection cut mid-request) must end final too.
        lost += sum(1 for s, st in tokens.items() if st not in FINAL_STATES and s not in accepted)
        with self.sink.lock:
            received = list(self.sink.received)
        per_message = Counter((tuple(m.rcpt_tos), m.subject) for m in received)
        duplicate_mails = sum(n - 1 for n in per_message.values())
        per_id = Counter(str(m.message["Message-ID"]) for m in received)
        window = sum(n - 1 for n in per_id.values())
        mailed = {s for _, subject in per_message for s in subject.split() if s in tokens}
        unmailed = sorted(
            s for s, st in tokens.items() if st in (*MAILED_STATES, "revoked") and s not in mailed
        )
        detail = await self._why_unmailed(unmailed[:5]) if unmailed else ""
        return Verdict(
            name=name,
            accepted=len(submission.accepted),
            refused=sum(submission.refused.values()),
            server_errors=submission.refused["http 500"],
            retried=sum(submission.retried.values()),
            unanswered=sum(1 for s in tokens if s not in accepted),
            lost=lost,
            duplicate_certs=await self.duplicate_certificates(),
            duplicate_mails=duplicate_mails,
            missing_mails=len(unmailed),
            window_duplicates=window,
            drain_seconds=drain_seconds,
            states=dict(Counter(tokens.values())),
            detail=detail,
        )

    async def _why_unmailed(self, serials: list[str]) -> str:
        """Delivery records and notifier log lines of tokens that got no mail."""
        lines = []
        logs = {n: (self.procs.logdir / f"{n}.log").read_text() for n in self.names(NOTIFIER)}
        for serial in serials:
            rows = await self.rows(
                "SELECT status, attempts, error FROM mail_delivery WHERE serial = :s", s=serial
            )
            seen = [n for n, text in logs.items() if serial in text]
            lines.append(f"{serial}: deliveries={[tuple(r) for r in rows]} in logs of {seen}")
        return "; ".join(lines)

    # --- operator setup ---------------------------------------------------------------------

    def setup(self, api: str, users: int) -> None:
        """Log in, add *users* users with mail addresses, the SMTP server and the handlers."""
        url = self.apis[api]
        answer = httpx.post(f"{url}/auth", json=ADMIN, timeout=30)
        assert answer.status_code == 200, answer.text
        self.admin_token = answer.json()["result"]["value"]["token"]
        headers = {"Authorization": self.admin_token}
        calls: list[tuple[str, dict[str, Any]]] = [
            (
                "/user/",
                {"user": user_name(i), "realm": REALM, "email": user_email(i), "givenname": "U"},
            )
            for i in range(users)
        ]
        calls.append(
            (
                f"/smtpserver/{MAIL_SERVER}",
                {
                    "server": self.sink.host,
                    "port": self.sink.port,
                    "sender": "certtoken@example.org",
                    "timeout": 5,
                },
            )
        )
        calls.extend(
            (
                "/event",
                {
                    "name": f"mail {state}",
                    "event": "token_init",
                    "handlermodule": "UserNotification",
                    "action": "sendmail",
                    "conditions": {"rollout_state": state},
                    "options": {"emailconfig": MAIL_SERVER, "To": "tokenowner"},
                },
            )
            for state in MAILED_STATES
        )
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            for path, body in calls:
                answer = client.post(path, json=body)
                assert answer.status_code == 200, answer.text
        self.users = users


@contextmanager
def deployed(
    workdir: Path,
    database_url: str,
    *,
    apis: int = 2,
    workers: int = 2,
    notifiers: int = 2,
    users: int = 20,
    env: dict[str, str] | None = None,
    api_env: dict[str, str] | None = None,
) -> Iterator[Deployment]:
    """A prepared system with *apis*, *workers* and *notifiers* processes, all ready."""
    extra = {
        "CERTTOKEN_INIT_WAIT_SECONDS": "0",
        # Six processes at 10 connections each stay well under PostgreSQL's default 100
        # (at the default 30 each they ran out: "too many clients", then duplicate mails).
        "CERTTOKEN_DB_POOL_SIZE": "5",
        "CERTTOKEN_DB_MAX_OVERFLOW": "5",
        **(env or {}),
    }
    with vhost_url() as amqp:
        procs = Processes(service_env(workdir / "data", amqp, database_url, **extra), workdir)
        sink = SmtpSink().start()
        deployment = Deployment(procs, sink, database_url)
        try:
            for args in (
                ("db", "upgrade"),
                ("ca", "create", CA),
                ("admin", "add", ADMIN["username"], "-p", ADMIN["password"]),
            ):
                done = procs.cli(*args)
                assert done.returncode == 0, done.stderr
            for i in range(apis):
                deployment.launch(f"{API}-{i + 1}", API, api_env)
            for i in range(workers):
                deployment.launch(f"{CA_WORKER}-{i + 1}", CA_WORKER)
            for i in range(notifiers):
                deployment.launch(f"{NOTIFIER}-{i + 1}", NOTIFIER)
            deployment.wait_ready()
            deployment.setup(f"{API}-1", users)
            yield deployment
        finally:
            procs.stop_all()
            sink.stop()
