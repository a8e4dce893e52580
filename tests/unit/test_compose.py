"""docker-compose.yml and the Dockerfile keep the promises of the ops design."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

# The `certtoken` subcommands (to be wired to services.cli.build_parser()).
IMAGE = "certtoken:local"
CERTTOKEN_SERVICES = ("migrate", "api", "ca-worker", "notifier")
LONG_RUNNING = ("rabbitmq", "postgres", "mailcatcher", "api", "ca-worker", "notifier")
WORKERS = ("ca-worker", "notifier")
INFRA = ("rabbitmq", "postgres")
SECRET_WORDS = frozenset(
    {"PASS", "PASSWD", "PASSWORD", "PASSPHRASE", "SECRET", "TOKEN", "KEY", "CREDENTIALS"}
)
INTERPOLATION = re.compile(r"^\$\{[A-Z0-9_]+(:?-[^}]*)?\}$")
URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^:/@]*:(?P<password>[^@]*)@", re.IGNORECASE)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping, whichever form the file uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def is_secret_name(name: str) -> bool:
    """Whether an environment variable name says it holds a credential."""
    words = name.upper().removeprefix("CERTTOKEN_").split("_")
    return any(word in SECRET_WORDS for word in words)


def argv(command: str | list[str]) -> list[str]:
    """A compose command as an argument list."""
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def test_expected_services_exist(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= {"rabbitmq", "postgres", "mailcatcher", *CERTTOKEN_SERVICES}


def test_one_image_built_from_the_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    for name in CERTTOKEN_SERVICES:
        assert services[name]["image"] == IMAGE, name
        assert services[name]["build"] in (".", {"context": "."}), name


def test_shared_environment(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    shared = compose["x-certtoken-env"]
    assert shared["CERTTOKEN_DATA_DIR"] == "/data"
    assert shared["CERTTOKEN_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert "@postgres:" in shared["CERTTOKEN_DATABASE_URL"]
    assert "@rabbitmq:" in shared["CERTTOKEN_AMQP_URL"]
    for name in CERTTOKEN_SERVICES:
        env = environment(services[name])
        assert {k: env[k] for k in shared} == shared, name


def test_services_wait_for_infra_and_migrations(services: dict[str, dict[str, Any]]) -> None:
    for name in ("api", *WORKERS):
        depends = services[name]["depends_on"]
        for infra in INFRA:
            assert depends[infra]["condition"] == "service_healthy", (name, infra)
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_migrate_is_a_one_shot_db_upgrade(services: dict[str, dict[str, Any]]) -> None:
    migrate = services["migrate"]
    assert argv(migrate["command"]) == ["db", "upgrade"]
    assert str(migrate["restart"]) == "no"
    assert "healthcheck" not in migrate


def test_long_running_services_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name in LONG_RUNNING:
        test = services[name]["healthcheck"]["test"]
        assert test, name
        assert test[0] in ("CMD", "CMD-SHELL"), name
    assert argv(services["rabbitmq"]["healthcheck"]["test"])[1:] == [
        "rabbitmq-diagnostics",
        "-q",
        "ping",
    ]
    assert "pg_isready" in " ".join(argv(services["postgres"]["healthcheck"]["test"]))


@pytest.mark.parametrize(("name", "port"), [("api", 8000), ("ca-worker", 8001), ("notifier", 8002)])
def test_healthchecks_probe_the_service_port(
    services: dict[str, dict[str, Any]], name: str, port: int
) -> None:
    probe = " ".join(argv(services[name]["healthcheck"]["test"]))
    assert f"127.0.0.1:{port}/healthz" in probe
    if name in WORKERS:
        assert environment(services[name])["CERTTOKEN_HEALTH_PORT"] == str(port)


def test_workers_can_scale(services: dict[str, dict[str, Any]]) -> None:
    for name in WORKERS:
        assert "container_name" not in services[name], name
        assert "ports" not in services[name], name


def test_graceful_stop(services: dict[str, dict[str, Any]]) -> None:
    for name in ("api", *WORKERS):
        assert services[name]["stop_grace_period"] == "30s", name


def test_data_volume_is_shared(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    assert "certtoken-data" in compose["volumes"]
    for name in ("migrate", "api", "ca-worker"):
        assert "certtoken-data:/data" in services[name]["volumes"], name


def test_secrets_come_from_files(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    assert compose["secrets"]["secret_key"]["file"] == "./secrets/secret_key"
    assert compose["secrets"]["ca_passphrase"]["file"] == "./secrets/ca_passphrase"
    for name in ("api", *WORKERS):
        assert "secret_key" in services[name]["secrets"], name
        env = environment(services[name])
        assert env["CERTTOKEN_SECRET_KEY_FILE"] == "/run/secrets/secret_key"
    assert "ca_passphrase" in services["ca-worker"]["secrets"]
    assert (
        environment(services["ca-worker"])["CERTTOKEN_CA_PASSPHRASE_FILE"]
        == "/run/secrets/ca_passphrase"
    )
    # Only the ca-worker reads CA private keys.
    for name in ("api", "notifier", "migrate"):
        assert "ca_passphrase" not in services[name].get("secrets", []), name


def test_no_secret_values_inline(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for key, value in environment(service).items():
            where = f"{name}: {key}"
            if key.endswith("_FILE"):
                assert value.startswith("/run/secrets/"), where
            elif is_secret_name(key) and value:
                # Only compose variables (documented dev defaults), never literal values.
                assert INTERPOLATION.match(value), where
            match = URL_PASSWORD.match(value)
            if match:
                assert INTERPOLATION.match(match["password"]), where


def test_commands_are_certtoken_subcommands(services: dict[str, dict[str, Any]]) -> None:
    parser = build_parser()
    for name in CERTTOKEN_SERVICES:
        args = parser.parse_args(argv(services[name]["command"]))  # exits on an unknown command
        assert args.command in {"api", "ca-worker", "notifier", "db"}, name


def test_dockerfile_entrypoint_user_and_constraints() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    entrypoints = [args for keyword, args in instructions if keyword == "ENTRYPOINT"]
    assert [json.loads(e) for e in entrypoints] == [["certtoken"]]
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
    assert any("constraints.txt" in args for keyword, args in instructions if keyword == "COPY")
    installs = [
        args for keyword, args in instructions if keyword == "RUN" and "pip install" in args
    ]
    assert any(re.search(r"pip install (.* )?-c constraints\.txt", args) for args in installs)


def test_dockerfile_bakes_in_no_secrets() -> None:
    for keyword, args in dockerfile_instructions():
        if keyword in ("ENV", "ARG"):
            names = [item.split("=", 1)[0] for item in shlex.split(args)]
            assert not any(is_secret_name(n) for n in names), args
        if keyword in ("COPY", "ADD"):
            assert "secrets" not in args.split(), args


# --- issue 13: key store, backups, public URL, log format ------------------------------------

CA_KEY_USERS = ("ca-worker", "tools")


def test_key_store_choice_reaches_what_signs(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    assert compose["secrets"]["pkcs11_pin"]["file"] == "./secrets/pkcs11_pin"
    for name in CA_KEY_USERS:
        env = environment(services[name])
        # Unset by default: file key stores; .env names the HSM's module to use PKCS#11.
        assert env["CERTTOKEN_PKCS11_MODULE"] == "${CERTTOKEN_PKCS11_MODULE:-}", name
        assert env["CERTTOKEN_CA_PASSPHRASE_FILE"] == "/run/secrets/ca_passphrase", name
        assert "pkcs11_pin" in services[name]["secrets"], name
        modules = [v for v in services[name]["volumes"] if v.endswith(":/opt/pkcs11:ro")]
        assert modules == ["${CERTTOKEN_PKCS11_DIR:-./pkcs11}:/opt/pkcs11:ro"], name
    for name in ("api", "notifier", "migrate"):
        assert "pkcs11_pin" not in services[name].get("secrets", []), name
        assert "CERTTOKEN_PKCS11_MODULE" not in environment(services[name]), name
    # The PIN file path the comments tell `ca create --pin-file` to record.
    args = build_parser().parse_args(
        [
            "ca",
            "create",
            "hsmca",
            "--key-store",
            "pkcs11",
            "--pkcs11-uri",
            "pkcs11:token=t;object=o;type=private",
            "--pin-file",
            "/run/secrets/pkcs11_pin",
        ]
    )
    assert args.pin_file == "/run/secrets/pkcs11_pin"
    assert "--pin-file /run/secrets/pkcs11_pin" in COMPOSE.read_text()


def test_backups_go_to_their_own_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    assert "certtoken-backups" in compose["volumes"]
    assert compose["secrets"]["backup_passphrase"]["file"] == "./secrets/backup_passphrase"
    tools = services["tools"]
    assert tools["image"] == IMAGE and tools["profiles"] == ["tools"]
    assert str(tools["restart"]) == "no"
    assert {"certtoken-data:/data", "certtoken-backups:/backups"} <= set(tools["volumes"])
    assert {"secret_key", "ca_passphrase", "backup_passphrase"} <= set(tools["secrets"])
    env = environment(tools)
    shared = compose["x-certtoken-env"]
    assert {k: env[k] for k in shared} == shared
    for name in ("api", "ca-worker", "notifier", "migrate"):
        assert "backup_passphrase" not in services[name].get("secrets", []), name
        assert "certtoken-backups:/backups" not in services[name].get("volumes", []), name
    # The backup command the comments give parses, into the volume, with the secret file.
    [line] = [line for line in COMPOSE.read_text().splitlines() if "run --rm tools backup" in line]
    command = line.split("run --rm tools ", 1)[1].rstrip("\\ ") + (
        " --passphrase-file /run/secrets/backup_passphrase"
    )
    args = build_parser().parse_args(argv(command.replace("$(date -u +%Y%m%dT%H%M%SZ)", "x")))
    assert args.command == "backup" and str(args.file).startswith("/backups/")
    assert str(args.passphrase_file) == "/run/secrets/backup_passphrase"
    # A named volume starts as the image's directory: the image's user must own /backups.
    setup = " ".join(args for keyword, args in dockerfile_instructions() if keyword == "RUN")
    assert re.search(r"install -d -o certtoken -g certtoken -m 0750 [^&]*/backups", setup)


def test_public_url_and_log_format_are_settings(compose: dict[str, Any]) -> None:
    from shared.config import Settings

    shared = compose["x-certtoken-env"]
    # Off unless .env sets it; a set value must pass the setting's own check.
    assert shared["CERTTOKEN_PUBLIC_URL"] == "${CERTTOKEN_PUBLIC_URL:-}"
    assert Settings(public_url="").public_url == ""
    assert Settings(public_url="https://pki.example.org/").public_url == "https://pki.example.org"
    assert shared["CERTTOKEN_LOG_FORMAT"] == "json"
    assert Settings(log_format=shared["CERTTOKEN_LOG_FORMAT"]).resolved_log_format == "json"
    assert "CERTTOKEN_LOG_JSON" not in shared
