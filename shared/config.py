"""Settings shared by every certtoken command, read from ``CERTTOKEN_*`` variables."""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from ipaddress import ip_network
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.attestation import AttestationMode
from shared.ca_hosts import DEFAULT_ALLOWED, allowed_entry
from shared.files import private_dir
from shared.keyring import read_keyring


class Settings(BaseSettings):
    """Validated configuration; every service and the CLI build it the same way."""

    model_config = SettingsConfigDict(env_prefix="CERTTOKEN_", extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str = ""
    amqp_url: str = ""
    secret_key: str = Field(default="", repr=False)
    secret_key_file: Path | None = None
    # privacyIDEA's signed answers: an RSA key (PEM), made in the data dir when not given.
    response_signing: bool = True
    response_signing_key_file: Path | None = None
    ca_passphrase: str = Field(default="", repr=False)
    ca_passphrase_file: Path | None = None
    init_wait_seconds: float = Field(default=5.0, ge=0, le=120)
    jwt_lifetime_seconds: int = Field(default=3600, gt=0)
    log_level: str = "INFO"
    # auto: readable lines when stderr is a terminal, JSON lines otherwise; json or text to choose.
    log_format: Literal["auto", "json", "text"] = "auto"
    # The older switch, still honoured when log_format is auto: true is json, false is text.
    log_json: bool | None = None
    prefetch: int = Field(default=64, gt=0)
    # RabbitMQ queue type of the work, parking and delay queues: quorum (replicated; RabbitMQ
    # 3.10+) or classic. A queue's type cannot change in place (see the README).
    queue_type: Literal["quorum", "classic"] = "quorum"
    # Deliveries without an ack (crashing consumers) before a quorum queue parks a message.
    delivery_limit: int = Field(default=20, ge=1, le=1000)
    retry_delays_ms: list[int] = Field(default=[1000, 5000, 30000, 120000])
    max_attempts: int = Field(default=6, gt=0)
    outbox_batch: int = Field(default=200, gt=0)
    # PostgreSQL connections per process: at most pool + overflow. With several processes,
    # their sum must stay under the server's max_connections (100 by default).
    db_pool_size: int = Field(default=10, ge=1, le=1000)
    db_max_overflow: int = Field(default=20, ge=0, le=1000)
    outbox_poll_seconds: float = Field(default=1.0, gt=0)
    outbox_lease_seconds: float = Field(default=30.0, gt=0)
    # After SIGTERM, how long a process finishes the requests and messages in hand; with the
    # closing of connections it fits in the usual 30 s stop grace (compose, Kubernetes).
    drain_seconds: float = Field(default=20.0, gt=0, le=3600)
    health_port: int = Field(default=0, ge=0, le=65535)
    health_host: str = "127.0.0.1"
    # --- notifier ---
    mail_outbox_dir: Path | None = None
    mail_sender: str = "certtoken@localhost"
    smtp_ca_file: Path | None = None
    smtp_pool_size: int = Field(default=8, gt=0, le=100)
    notifier_claim_margin_seconds: float = Field(default=5.0, gt=0, le=300)
    # --- audit and login ---
    # After this many wrong passwords in a row a user's login is locked for the window.
    login_max_failures: int = Field(default=5, gt=0, le=1000)
    login_lockout_seconds: float = Field(default=300.0, gt=0, le=86400)
    audit_batch: int = Field(default=500, gt=0)
    # --- enrollment: server-wide defaults that policies override ---
    attestation_ca_path: Path | None = None
    require_attestation: AttestationMode = AttestationMode.IGNORE
    # Users of these realms who log in get the admin role (privacyIDEA's superuser realms).
    superuser_realms: list[str] = Field(default=[])
    # --- ca_worker: processes that generate keys for genkey tokens; 0 = one per core ---
    keygen_workers: int = Field(default=0, ge=0, le=64)
    # --- ca_worker: expiry notices (services/ca_worker/expiry.py) ---
    # How often certificates nearing their end are looked for.
    expiry_scan_seconds: float = Field(default=3600.0, gt=0, le=86400)
    # A CA certificate with this many days left or fewer is reported (a ca_expiring event).
    ca_expiry_warning_days: int = Field(default=90, ge=1, le=3650)
    # --- remote CA connectors: hosts and networks they may reach (shared.ca_hosts) ---
    ca_allowed_hosts: list[str] = Field(default=list(DEFAULT_ALLOWED))
    # --- per-client rate limits (services.api.ratelimit); 0 turns a route's limit off ---
    rate_limit_enabled: bool = True
    rate_limit_window_seconds: int = Field(default=60, ge=1, le=86400)
    rate_limit_auth: int = Field(default=120, ge=0, le=1_000_000)
    rate_limit_token_init: int = Field(default=0, ge=0, le=1_000_000)
    rate_limit_flush_seconds: float = Field(default=0.5, gt=0, le=10)
    # Peers whose X-Forwarded-For names the client (IPs or CIDRs); none by default.
    trusted_proxies: list[str] = Field(default=[])
    # Where relying parties reach this api (e.g. https://pki.example.org): certificates of local
    # CAs then name its CRL, OCSP and CA certificate URLs. Empty: they name none.
    public_url: str = ""

    @field_validator("amqp_url", "database_url")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @field_validator("attestation_ca_path", mode="before")
    @classmethod
    def _no_empty_path(cls, value: object) -> object:
        # An empty variable means "none", not the current directory.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("ca_allowed_hosts")
    @classmethod
    def _ca_hosts(cls, value: list[str]) -> list[str]:
        return [allowed_entry(entry) for entry in value]

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        return [str(ip_network(entry.strip(), strict=False)) for entry in value]

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        return public_base_url(value)

    @field_validator("retry_delays_ms")
    @classmethod
    def _delays(cls, value: list[int]) -> list[int]:
        if not value or any(d <= 0 for d in value):
            raise ValueError("retry delays must be positive milliseconds")
        return value

    @cached_property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to an SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'certtoken.db').resolve()}"

    @property
    def resolved_log_format(self) -> Literal["auto", "json", "text"]:
        """log_format, or what the older log_json chose when log_format is auto."""
        if self.log_format != "auto" or self.log_json is None:
            return self.log_format
        return "json" if self.log_json else "text"

    @property
    def resolved_secret_key(self) -> str:
        """The signing and encryption keyring (shared.keyring); made once in the data dir.

        Read again whenever its file changes, so a ``secrets rotate`` reaches running services.
        """
        if self.secret_key:
            return self.secret_key
        path = self.secret_key_path
        assert path is not None
        if self.secret_key_file is None and not path.exists():
            _read_or_create_secret(path)
        return read_keyring(path).strip()

    @property
    def secret_key_path(self) -> Path | None:
        """The file of the keyring; None when CERTTOKEN_SECRET_KEY gives the key itself."""
        if self.secret_key:
            return None
        return self.secret_key_file or self.data_dir / "secret_key"

    @cached_property
    def resolved_ca_passphrase(self) -> bytes:
        """The passphrase that encrypts local CA keys at rest."""
        if self.ca_passphrase:
            return self.ca_passphrase.encode()
        if self.ca_passphrase_file is not None:
            return self.ca_passphrase_file.read_text().strip().encode()
        return _read_or_create_secret(self.data_dir / "ca_passphrase").encode()

    @property
    def ca_dir(self) -> Path:
        """Where local CA material lives."""
        return self.data_dir / "ca"

    @property
    def mail_outbox(self) -> Path:
        """Where mail goes when an event handler names no SMTP server (embedded mode)."""
        return self.mail_outbox_dir or self.data_dir / "mail-outbox"


def _read_or_create_secret(path: Path) -> str:
    """Return the secret in *path*, creating it (mode 0600) when missing."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    private_dir(path.parent)
    value = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def public_base_url(text: str) -> str:
    """An http(s) base URL without query or fragment, without a trailing slash; "" stays off."""
    value = text.strip()
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("public_url: must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise ValueError("public_url: must have no query or fragment")
    if parts.username is not None or parts.password is not None:
        raise ValueError("public_url: must not hold a user name or password")
    if not value.isascii() or any(c.isspace() for c in value):
        raise ValueError("public_url: must be ASCII without spaces (certificates carry it)")
    return value.rstrip("/")
