"""The ``backup``, ``restore`` and ``secrets`` commands of the ``certtoken`` CLI."""

from __future__ import annotations

import argparse
import getpass
import sqlite3
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from shared.config import Settings

_MAX_PASSPHRASE_FILE = 4096
DEFAULT_SETTLE_SECONDS = 10.0


def add_parsers(sub: Any) -> None:
    """Add the maintenance commands to the CLI's subparsers *sub*."""
    backup = sub.add_parser(
        "backup",
        help="write an encrypted backup of the database, secrets and CA files (while running)",
        description="Copy the database consistently while the services run, with the secret "
        "keyring, the CA passphrase, the response-signing key and data/ca, into one file "
        "encrypted with a passphrase (AES-256-GCM, key by scrypt). FILE must not exist.",
    )
    backup.add_argument("file", type=Path, help="the backup file to create")
    _passphrase_arg(backup)
    restore = sub.add_parser(
        "restore",
        help="restore a backup into an empty data dir and an empty database",
        description="Check the whole backup, then write it into the data dir and database the "
        "settings name; both must be empty. Migrates to the latest revision afterwards.",
    )
    restore.add_argument("file", type=Path, help="the backup file to restore")
    _passphrase_arg(restore)
    secrets = sub.add_parser("secrets", help="manage the secret key")
    secrets_sub = secrets.add_subparsers(dest="secrets_command", required=True, metavar="ACTION")
    rotate = secrets_sub.add_parser(
        "rotate",
        help="re-seal every stored secret under a new secret key (resumes one under way)",
        description="Put a new key in front of the keyring file (the old one stays accepted), "
        "re-seal every sealed secret under it, then remove the old key. Running services "
        "follow the keyring file; see the README for services that cannot see it change.",
    )
    rotate.add_argument(
        "--settle",
        type=_seconds,
        default=DEFAULT_SETTLE_SECONDS,
        help="seconds to wait for seals under way before re-sealing (default %(default)s)",
    )


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError("must be 0 to 3600 seconds")
    return value


def _database_error(exc: Exception) -> str:
    """What went wrong with the database, without the statement or its parameters."""
    cause = getattr(exc, "orig", None) or exc
    return f"database: {type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"


def _passphrase_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--passphrase-file",
        type=Path,
        help="file whose first line is the passphrase (prompted for when omitted)",
    )


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def read_passphrase(path: Path | None, *, confirm: bool) -> bytes:
    """The passphrase from *path* or the terminal; CommandError when there is none."""
    from services.cli import CommandError
    from services.maintenance.archive import MIN_PASSPHRASE
    from shared.files import read_regular

    if path is not None:
        try:
            text = read_regular(path, _MAX_PASSPHRASE_FILE).decode()
        except (OSError, ValueError) as exc:
            raise CommandError(f"--passphrase-file: {exc}") from None
        lines = text.splitlines()
        passphrase = lines[0] if lines else ""
    else:
        if not sys.stdin.isatty():
            raise CommandError("no passphrase: give --passphrase-file or run in a terminal")
        passphrase = getpass.getpass("Backup passphrase: ")
        if confirm and passphrase != getpass.getpass("Repeat passphrase: "):
            raise CommandError("the passphrases differ")
    if confirm and len(passphrase) < MIN_PASSPHRASE:
        raise CommandError(f"passphrase: at least {MIN_PASSPHRASE} characters, please")
    if not passphrase:
        raise CommandError("passphrase: empty")
    return passphrase.encode()


async def cmd_backup(settings: Settings, args: argparse.Namespace) -> None:
    """``backup FILE``."""
    from services.cli import CommandError
    from services.maintenance.backup import BackupError, make_backup

    passphrase = read_passphrase(args.passphrase_file, confirm=True)
    try:
        manifest = await make_backup(settings, args.file, passphrase, _progress)
    except BackupError as exc:
        raise CommandError(str(exc)) from None
    except (OSError, SQLAlchemyError, sqlite3.Error) as exc:
        raise CommandError(_database_error(exc)) from None
    rows = sum(manifest["database"]["tables"].values())
    print(
        f"backup written to {args.file}: {manifest['database']['kind']} database at revision "
        f"{manifest['database']['revision']} ({rows} rows), {len(manifest['members'])} files"
    )


async def cmd_restore(settings: Settings, args: argparse.Namespace) -> None:
    """``restore FILE``."""
    from services.cli import CommandError
    from services.maintenance.dbcopy import LoadError
    from services.maintenance.restore import RestoreError, restore

    passphrase = read_passphrase(args.passphrase_file, confirm=False)
    try:
        await restore(settings, args.file, passphrase, _progress)
    except (RestoreError, LoadError) as exc:
        raise CommandError(str(exc)) from None
    except (OSError, SQLAlchemyError, sqlite3.Error) as exc:
        raise CommandError(f"nothing was restored: {_database_error(exc)}") from None
    print(f"restored {args.file} into {settings.data_dir}")


async def cmd_secrets(settings: Settings, args: argparse.Namespace) -> None:
    """``secrets rotate``."""
    from services.cli import CommandError
    from services.maintenance.rotation import RotationError, rotate
    from shared.db.session import Database

    path = settings.secret_key_path
    if path is not None and not path.is_file():
        raise CommandError(f"{path}: no secret key to rotate (is CERTTOKEN_DATA_DIR right?)")
    db = Database.for_settings(settings)
    try:
        done = await rotate(settings, db, settle=args.settle, progress=_progress)
    except RotationError as exc:
        raise CommandError(str(exc)) from None
    except SQLAlchemyError as exc:
        raise CommandError(_database_error(exc)) from None
    finally:
        await db.dispose()
    verb = "finished the rotation under way" if done.resumed else "rotated the secret key"
    print(f"{verb}: {done.resealed} sealed value(s) re-sealed; the old key is no longer needed")


HANDLERS: dict[str, Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, None]]] = {
    "backup": cmd_backup,
    "restore": cmd_restore,
    "secrets": cmd_secrets,
}
