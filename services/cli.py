"""The ``certtoken`` command: the one place that composes the three services."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select

from services import __version__
from services.command_error import CommandError as CommandError
from services.maintenance.commands import HANDLERS as MAINTENANCE_HANDLERS
from services.maintenance.commands import add_parsers as add_maintenance_parsers
from services.operator_commands import HANDLERS as OPERATOR_HANDLERS
from services.operator_commands import add_parsers as add_operator_parsers
from services.operator_commands import print_json, print_table
from shared.config import Settings
from shared.db.session import Database
from shared.files import private_dir
from shared.logs import configure
from shared.messaging.topology import QUEUES_BY_SERVICE

KEY_TYPES = ("ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096")
DEFAULT_CA = "localca"
FIRST_ADMIN = "admin"
FIRST_ADMIN_PASSWORD_FILE = "initial-admin-password"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with help for every command."""
    parser = argparse.ArgumentParser(
        prog="certtoken",
        description="Certificate-token enrollment: api, ca_worker and notifier around RabbitMQ.",
        epilog="Settings come from CERTTOKEN_* environment variables (see the README).",
    )
    parser.add_argument("--version", action="version", version=f"certtoken {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="all three services in one process (SQLite, in-process broker unless AMQP_URL)",
        description="Run api, ca_worker and notifier in one process. Applies migrations and "
        f"creates a local CA named {DEFAULT_CA!r} on first start.",
    )
    _http_args(run)
    api = sub.add_parser("api", help="the HTTP API alone (needs CERTTOKEN_AMQP_URL)")
    _http_args(api)
    sub.add_parser("ca-worker", help="the CA worker alone: signs CSR jobs from RabbitMQ")
    sub.add_parser("notifier", help="the notifier alone: consumes token events from RabbitMQ")

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", help="apply all Alembic migrations")

    admin = sub.add_parser("admin", help="manage administrators")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    add = admin_sub.add_parser("add", help="add an administrator")
    add.add_argument("name", help="login name of the new administrator")
    add.add_argument("-p", "--password", help="password (prompted for when omitted)")
    add.add_argument("--email", default="", help="where event handlers mail this admin")
    admin_sub.add_parser("list", help="list administrators")
    delete = admin_sub.add_parser("delete", help="delete an administrator")
    delete.add_argument("name")

    ca = sub.add_parser("ca", help="manage local certificate authorities")
    ca_sub = ca.add_subparsers(dest="ca_command", required=True, metavar="ACTION")
    create = ca_sub.add_parser(
        "create",
        help="create a local CA and register it as a CA connector of type 'local'",
        description="Create a self-signed root CA, or with --csr-out a CA under the "
        "organisation's root: its key and a CSR for the root to sign (then `ca install`). "
        "A file key is stored encrypted under CERTTOKEN_DATA_DIR; a PKCS#11 key stays in its "
        "token. An existing NAME is an error, never an overwrite.",
    )
    create.add_argument("name", help="connector name, e.g. localca")
    create.add_argument("--subject", help='CA subject, e.g. "/CN=Example CA/O=Example"')
    create.add_argument("--key-type", choices=KEY_TYPES, default="ec-p256")
    create.add_argument("--days", type=_positive_int, default=3650, help="validity in days")
    create.add_argument(
        "--csr-out",
        metavar="FILE",
        help="write a CSR (PEM) for the organisation's root to sign; the CA is not ready "
        "until `certtoken ca install`",
    )
    create.add_argument(
        "--key-store", choices=("file", "pkcs11"), default="file", help="where the key lives"
    )
    create.add_argument(
        "--pkcs11-uri",
        default="",
        help="the token's private key (RFC 7512), e.g. pkcs11:token=certtoken;object=myca;"
        "type=private; made there (--key-type) unless the token holds it",
    )
    create.add_argument("--pin-file", default="", help="a file holding the token's user PIN")
    install = ca_sub.add_parser(
        "install",
        help="install the certificate the organisation's root issued for a CA from --csr-out",
        description="Check that the certificate matches the CA's key, is a CA certificate, "
        "is valid now and chains to a self-signed root in --chain; then the CA is ready.",
    )
    install.add_argument("name")
    install.add_argument("--cert", required=True, metavar="FILE", help="the CA certificate (PEM)")
    install.add_argument(
        "--chain", metavar="FILE", help="the issuing certificates up to the root (PEM bundle)"
    )
    adopt = ca_sub.add_parser(
        "import",
        help="adopt an existing CA (certificate and key)",
        description="The key (PKCS#8 or traditional PEM, encrypted or not) is stored "
        "re-encrypted under certtoken's CA passphrase; the same checks as `ca install`.",
    )
    adopt.add_argument("name")
    adopt.add_argument("--cert", required=True, metavar="FILE", help="the CA certificate (PEM)")
    adopt.add_argument("--key", required=True, metavar="FILE", help="its private key (PEM)")
    adopt.add_argument(
        "--chain", metavar="FILE", help="the issuing certificates up to the root (PEM bundle)"
    )
    adopt.add_argument(
        "--key-passphrase-file",
        metavar="FILE",
        help="a file holding the key's passphrase (prompted for in a terminal when omitted)",
    )
    ca_sub.add_parser("list", help="list CA connectors and whether they are ready")
    roll = ca_sub.add_parser(
        "rollover",
        help="give a local CA a new key and certificate; the old key answers for what it issued",
        description="A self-signed CA gets its new certificate now; a CA under the "
        "organisation's root (or with --csr-out) gets a CSR, completed by `certtoken ca "
        "install`. New enrollments use the new key once it is active; the old key keeps "
        "signing CRLs and OCSP answers for its certificates until the last of them expires.",
    )
    roll.add_argument("name")
    roll.add_argument("--subject", help="the new certificate's subject (default: the current)")
    roll.add_argument(
        "--key-type", choices=KEY_TYPES, default=None, help="default: the current key's type"
    )
    roll.add_argument(
        "--days",
        type=_positive_int,
        default=3650,
        help="validity in days of a self-signed certificate (the root decides for a CSR)",
    )
    roll.add_argument("--csr-out", metavar="FILE", help="write a CSR (PEM) for the root to sign")
    roll.add_argument(
        "--key-store", choices=("file", "pkcs11"), default=None, help="default: the current"
    )
    roll.add_argument("--pkcs11-uri", default="", help="the new key in the token (RFC 7512)")
    roll.add_argument("--pin-file", default="", help="a file holding the token's user PIN")

    queue = sub.add_parser(
        "queue",
        help="inspect and replay parked messages (needs CERTTOKEN_AMQP_URL)",
        description="Messages that failed their last attempt are parked, never dropped. "
        "List them, then replay them once the cause is fixed.",
    )
    queue_sub = queue.add_subparsers(dest="queue_command", required=True, metavar="ACTION")
    for action, text in (("parked", "list parked messages"), ("replay", "replay parked messages")):
        cmd = queue_sub.add_parser(action, help=text)
        cmd.add_argument("service", choices=sorted(QUEUES_BY_SERVICE), help="whose queue")
        cmd.add_argument("--limit", type=_positive_int, default=None, help="at most this many")
        if action == "parked":
            cmd.add_argument("--json", action="store_true", help="one JSON document on stdout")
    add_maintenance_parsers(sub)
    add_operator_parsers(sub)
    return parser


def _http_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``certtoken`` console script."""
    args = build_parser().parse_args(argv)
    # Whatever a library writes (and whatever certtoken forgot) is owner-only too.
    os.umask(0o077)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"certtoken: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    handler = _HANDLERS[args.command]
    try:
        _run(handler(settings, args))
    except CommandError as exc:
        print(f"certtoken: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run *main* on uvloop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


async def _migrate(settings: Settings) -> None:
    from shared.db.migrate import upgrade

    if settings.resolved_database_url.startswith("sqlite"):
        private_dir(settings.data_dir)
    await upgrade(settings.resolved_database_url)


async def cmd_db(settings: Settings, args: argparse.Namespace) -> None:
    """``db upgrade``."""
    await _migrate(settings)
    print("database is at the latest revision")


async def cmd_admin(settings: Settings, args: argparse.Namespace) -> None:
    """``admin add|list|delete``."""
    from sqlalchemy import delete

    from shared.db.models import Admin
    from shared.security import hash_password

    await _migrate(settings)
    async with _database(settings) as db:
        if args.admin_command == "list":
            async with db.read() as session:
                for admin in await session.scalars(select(Admin).order_by(Admin.name)):
                    print(admin.name)
            return
        if args.admin_command == "delete":
            async with db.write() as session:
                result = await session.execute(delete(Admin).where(Admin.name == args.name))
            if not result.rowcount:  # type: ignore[attr-defined]
                raise CommandError(f"no administrator named {args.name!r}")
            print(f"administrator {args.name!r} deleted")
            return
        async with db.read() as session:
            if await session.scalar(select(Admin).where(Admin.name == args.name)):
                raise CommandError(f"administrator {args.name!r} exists already")
        email = _admin_email(args.email)
        password = args.password or _prompt_password()
        if len(password) < 8:
            raise CommandError("the password must have at least 8 characters")
        hashed = await asyncio.to_thread(hash_password, password)
        async with db.write() as session:
            session.add(Admin(name=args.name, password_hash=hashed, email=email))
        print(f"administrator {args.name!r} added")


def _admin_email(text: str) -> str:
    from shared.notification.handlers import address

    if not text:
        return ""
    try:
        return address(text)
    except ValueError as exc:
        raise CommandError(f"--email: {exc}") from None


def _prompt_password() -> str:
    if not sys.stdin.isatty():
        raise CommandError("no password given: use -p or run in a terminal")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat password: "):
        raise CommandError("the passwords differ")
    return first


async def cmd_ca(settings: Settings, args: argparse.Namespace) -> None:
    """``ca create|install|import|list|rollover``."""
    from services.ca_worker.ca_rollover import generation_state
    from shared.ca_material import GENERATION, generation_of, not_ready_reason, pending_rollover
    from shared.db.models import CAConnector, CAGeneration, utcnow
    from shared.expiry import ca_days_left_text

    await _migrate(settings)
    async with _database(settings) as db:
        if args.ca_command == "list":
            now = utcnow()
            async with db.read() as session:
                rows = (await session.scalars(select(CAConnector).order_by(CAConnector.name))).all()
                earlier = (
                    await session.scalars(
                        select(CAGeneration).order_by(CAGeneration.ca, CAGeneration.generation)
                    )
                ).all()
            for row in rows:
                ready = not_ready_reason(row.name, row.options) is None
                state = "ready" if ready else "not ready: waiting for ca install"
                pending = pending_rollover(row.options)
                if pending is not None:
                    state += f"; rollover to generation {pending[GENERATION]} pending: ca install"
                left = ca_days_left_text(row.cacert, now, settings.ca_expiry_warning_days)
                generation = generation_of(row.options)
                tail = f"\tgeneration {generation}" if generation > 1 else ""
                print(f"{row.name}\t{row.type}\t{state}\t{left}{tail}")
                for old in (g for g in earlier if g.ca == row.name):
                    print(f"  generation {old.generation}\t{generation_state(old)}")
            return
        if args.ca_command == "create":
            await _ca_create(settings, db, args)
        elif args.ca_command == "install":
            await _ca_install(settings, db, args)
        elif args.ca_command == "rollover":
            await _ca_rollover(settings, db, args)
        else:
            await _ca_import(settings, db, args)


async def _ca_create(settings: Settings, db: Database, args: argparse.Namespace) -> None:
    from services.ca_worker.ca_create import CAExistsError, create_ca_request, create_local_ca

    if args.key_store == "pkcs11" and not args.pkcs11_uri:
        raise CommandError("--pkcs11-uri: required with --key-store pkcs11")
    if args.key_store == "file" and (args.pkcs11_uri or args.pin_file):
        raise CommandError("--pkcs11-uri and --pin-file go with --key-store pkcs11")
    store = {
        "key_store": args.key_store,
        "pkcs11_uri": args.pkcs11_uri,
        "pkcs11_pin_file": _absolute(args.pin_file) if args.pin_file else "",
    }
    what = args.key_type if args.key_store == "file" else "PKCS#11"
    print(f"creating CA {args.name!r} with a {what} key ...", file=sys.stderr)
    try:
        if args.csr_out:
            request = await create_ca_request(
                settings, db, args.name, subject=args.subject, key_type=args.key_type, **store
            )
            _write_output(args.csr_out, request.csr)
            print(
                f"CA connector {args.name!r} (type local) created, not ready: have the "
                f"organisation's root sign {args.csr_out}, then "
                f"`certtoken ca install {args.name} --cert FILE --chain FILE`",
                file=sys.stderr,  # stdout may be the CSR itself (--csr-out -)
            )
            return
        connector = await create_local_ca(
            settings,
            db,
            args.name,
            subject=args.subject,
            key_type=args.key_type,
            days=args.days,
            **store,
        )
    except (CAExistsError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    print(f"CA connector {connector.name!r} (type local) created")
    print(connector.cacert, end="")


async def _ca_install(settings: Settings, db: Database, args: argparse.Namespace) -> None:
    from services.ca_worker.ca_install import InstallError, install_ca

    cert = _read_input("--cert", args.cert)
    chain = _read_input("--chain", args.chain) if args.chain else b""
    try:
        row = await install_ca(settings, db, args.name, cert, chain)
    except InstallError as exc:
        raise CommandError(f"{exc}; nothing was changed") from None
    print(f"CA {row.name!r} installed and ready")


async def _ca_rollover(settings: Settings, db: Database, args: argparse.Namespace) -> None:
    from services.ca_worker.ca_rollover import rollover_ca

    if args.key_store == "file" and (args.pkcs11_uri or args.pin_file):
        raise CommandError("--pkcs11-uri and --pin-file go with --key-store pkcs11")
    try:
        done = await rollover_ca(
            settings,
            db,
            args.name,
            subject=args.subject,
            key_type=args.key_type,
            days=args.days,
            key_store=args.key_store,
            pkcs11_uri=args.pkcs11_uri,
            pkcs11_pin_file=_absolute(args.pin_file) if args.pin_file else "",
            csr=bool(args.csr_out),
        )
    except ValueError as exc:
        raise CommandError(f"{exc}; nothing was changed") from None
    if done.csr:
        _write_output(args.csr_out, done.csr)
        print(
            f"CA {args.name!r}: generation {done.generation}'s key made; the current key issues "
            f"until `certtoken ca install {args.name} --cert FILE --chain FILE`",
            file=sys.stderr,
        )
        return
    print(f"CA {args.name!r} rolled over: generation {done.generation} issues from now on")
    print(done.cacert, end="")


async def _ca_import(settings: Settings, db: Database, args: argparse.Namespace) -> None:
    from services.ca_worker.ca_create import CAExistsError
    from services.ca_worker.ca_install import InstallError, import_ca

    cert = _read_input("--cert", args.cert)
    key = _read_input("--key", args.key)
    chain = _read_input("--chain", args.chain) if args.chain else b""
    passphrase: bytes | None = None
    if args.key_passphrase_file:
        passphrase = _read_input("--key-passphrase-file", args.key_passphrase_file).rstrip(b"\r\n")
    elif b"ENCRYPTED" in key and sys.stdin.isatty():
        passphrase = getpass.getpass("Passphrase of the CA key: ").encode()
    try:
        row = await import_ca(settings, db, args.name, cert, key, chain, passphrase)
    except (InstallError, CAExistsError, ValueError) as exc:
        raise CommandError(f"{exc}; nothing was changed") from None
    print(f"CA connector {row.name!r} (type local) imported and ready")


def _absolute(path: str) -> str:
    """*path* from the current directory: the ca_worker may run elsewhere."""
    return str(Path(path).absolute())


def _read_input(option: str, path: str) -> bytes:
    """The bytes of a file an option names (at most 1 MiB)."""
    from shared.files import read_regular

    try:
        return read_regular(Path(path), 1024 * 1024)
    except OSError as exc:
        raise CommandError(f"{option}: cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise CommandError(f"{option}: {exc}") from None


def _write_output(path: str, text: str) -> None:
    """Write *text* to *path* ("-" for standard output)."""
    if path == "-":
        print(text, end="")
        return
    try:
        Path(path).write_text(text)
    except OSError as exc:
        raise CommandError(f"--csr-out: cannot write {path}: {exc.strerror}") from None


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[Database]:
    """The database named by the settings, disposed of afterwards."""
    db = Database.for_settings(settings)
    try:
        yield db
    finally:
        await db.dispose()


async def cmd_queue(settings: Settings, args: argparse.Namespace) -> None:
    """``queue parked|replay``."""
    from services.runtime import broker_for

    _require_amqp(settings)
    spec = QUEUES_BY_SERVICE[args.service]
    broker = broker_for(settings)
    await broker.start()
    try:
        if args.queue_command == "parked":
            parked = await broker.peek_parked(spec, args.limit or 20)
            if args.json:
                print_json({"queue": spec.parking, "parked": parked, "count": len(parked)})
                return
            print_table(
                ("MESSAGE ID", "TYPE", "ATTEMPT", "ERROR"),
                [(p["message_id"], p["type"], p["attempt"], p.get("error", "")) for p in parked],
            )
            print(f"{len(parked)} parked message(s) shown from {spec.parking}", file=sys.stderr)
        else:
            moved = await broker.replay_parked(spec, args.limit)
            print(f"{moved} message(s) replayed to {spec.name}")
    finally:
        await broker.close()


async def cmd_run(settings: Settings, args: argparse.Namespace) -> None:
    """``run``: the embedded system in one process."""
    from services.api.app import create_app
    from services.ca_worker.ca_create import create_local_ca
    from services.ca_worker.service import CAWorker
    from services.notifier.service import Notifier
    from services.runtime import Component, api_drain_seconds, broker_for, http_server, serve
    from shared.db.models import CAConnector

    configure("certtoken", settings.log_level, settings.resolved_log_format)
    await _migrate(settings)
    async with _database(settings) as db:
        async with db.read() as session:
            has_ca = await session.scalar(select(CAConnector.name).limit(1))
        if not has_ca:
            await create_local_ca(settings, db, DEFAULT_CA)
            print(f"created a local CA connector {DEFAULT_CA!r}", file=sys.stderr)
        await _first_admin(settings, db)
        print(f"web UI: http://{args.host}:{args.port}/ui/", file=sys.stderr)
        broker = broker_for(settings)
        app = create_app(settings, broker, manage_broker=False, db=db)
        components: list[Component] = [
            CAWorker(settings, broker, db),
            Notifier(settings, broker, db),
        ]
        server = http_server(
            app, args.host, args.port, settings.trusted_proxies, api_drain_seconds(settings)
        )
        await serve(components, [server], broker)


async def _first_admin(settings: Settings, db: Database) -> None:
    """On a first start with no administrator, make one whose password only the data dir holds.

    The password goes to an owner-only file, never to the terminal or a log.
    """
    import secrets

    from shared.db.models import Admin
    from shared.files import create_private
    from shared.security import hash_password

    async with db.read() as session:
        if await session.scalar(select(Admin.name).limit(1)):
            return
    password = secrets.token_urlsafe(18)
    path = settings.data_dir / FIRST_ADMIN_PASSWORD_FILE
    if not create_private(path, password.encode() + b"\n"):
        password = path.read_text().strip()
    hashed = await asyncio.to_thread(hash_password, password)
    async with db.write() as session:
        session.add(Admin(name=FIRST_ADMIN, password_hash=hashed, email=""))
    print(
        f"created administrator {FIRST_ADMIN!r}; its password is in {path} "
        f"(certtoken admin add/delete to replace it)",
        file=sys.stderr,
    )


async def cmd_api(settings: Settings, args: argparse.Namespace) -> None:
    """``api``: the HTTP API alone."""
    from services.api.app import create_app
    from services.runtime import api_drain_seconds, broker_for, http_server, serve

    _require_amqp(settings)
    configure("api", settings.log_level, settings.resolved_log_format)
    app = create_app(settings, broker_for(settings))
    drain = api_drain_seconds(settings)
    await serve([], [http_server(app, args.host, args.port, settings.trusted_proxies, drain)], None)


async def cmd_ca_worker(settings: Settings, args: argparse.Namespace) -> None:
    """``ca-worker``: the CA worker alone."""
    from services.ca_worker.service import CAWorker

    await _run_worker(settings, "ca_worker", lambda broker, db: CAWorker(settings, broker, db))


async def cmd_notifier(settings: Settings, args: argparse.Namespace) -> None:
    """``notifier``: the notifier alone."""
    from services.notifier.service import Notifier

    await _run_worker(settings, "notifier", lambda broker, db: Notifier(settings, broker, db))


async def _run_worker(settings: Settings, name: str, factory: Callable[..., Any]) -> None:
    from services.runtime import broker_for, http_server, serve
    from shared.health import health_app, readiness_check

    _require_amqp(settings)
    configure(name, settings.log_level, settings.resolved_log_format)
    broker = broker_for(settings)
    async with _database(settings) as db:
        servers = []
        if settings.health_port:
            app = health_app(readiness_check(db, broker))
            server = http_server(
                app,
                settings.health_host,
                settings.health_port,
                drain_seconds=settings.drain_seconds,
            )
            servers.append(server)
        await serve([factory(broker, db)], servers, broker, http_first=False)


def _require_amqp(settings: Settings) -> None:
    if not settings.amqp_url:
        raise CommandError(
            "CERTTOKEN_AMQP_URL is required for a service on its own; "
            "`certtoken run` runs all three with an in-process broker"
        )


_HANDLERS: dict[str, Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, None]]] = {
    "run": cmd_run,
    "api": cmd_api,
    "ca-worker": cmd_ca_worker,
    "notifier": cmd_notifier,
    "db": cmd_db,
    "admin": cmd_admin,
    "ca": cmd_ca,
    "queue": cmd_queue,
    **MAINTENANCE_HANDLERS,
    **OPERATOR_HANDLERS,
}

if __name__ == "__main__":
    sys.exit(main())
