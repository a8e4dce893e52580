"""The command line: every command has help; settings are validated."""

from __future__ import annotations

import pytest

from services.cli import build_parser, main


def test_every_command_is_listed_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for command in ("run", "api", "ca-worker", "notifier", "db", "admin", "ca"):
        assert command in out


@pytest.mark.parametrize(
    "argv", [["run", "--help"], ["ca", "create", "--help"], ["admin", "add", "--help"]]
)
def test_subcommand_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 0
    assert "usage: certtoken" in capsys.readouterr().out


def test_bad_key_type_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ca", "create", "x", "--key-type", "dsa-512"])
    assert "invalid choice" in capsys.readouterr().err


def test_invalid_settings_are_reported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CERTTOKEN_INIT_WAIT_SECONDS", "-3")
    assert main(["db", "upgrade"]) == 2
    assert "init_wait_seconds" in capsys.readouterr().err


def test_single_services_need_a_broker(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    monkeypatch.delenv("CERTTOKEN_AMQP_URL", raising=False)
    monkeypatch.setenv("CERTTOKEN_DATA_DIR", str(tmp_path))
    assert main(["ca-worker"]) == 1
    assert "CERTTOKEN_AMQP_URL" in capsys.readouterr().err
