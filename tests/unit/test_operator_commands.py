"""The operator commands: arguments, tables, and a database that is not there yet."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.cli import build_parser, main
from services.operator_commands import print_table


def test_the_operator_commands_parse() -> None:
    parser = build_parser()
    listing = parser.parse_args(
        ["token", "list", "--user", "alice", "--state", "revoked", "--limit", "5", "--json"]
    )
    assert (listing.user, listing.state, listing.limit, listing.json) == (
        "alice",
        "revoked",
        5,
        True,
    )
    revoke = parser.parse_args(["token", "revoke", "CRT1", "--reason", "keyCompromise"])
    assert (revoke.serial, revoke.reason, revoke.json) == ("CRT1", "keyCompromise", False)
    deny = parser.parse_args(["request", "deny", "r1", "--reason", "no", "--wait", "0"])
    assert (deny.id, deny.reason, deny.wait) == ("r1", "no", 0)
    assert parser.parse_args(["queue", "parked", "notifier", "--json"]).json is True


@pytest.mark.parametrize(
    "argv",
    [
        ["request", "deny", "r1"],  # a denial needs its reason
        ["token", "list", "--state", "lost"],
        ["token", "revoke", "CRT1", "--reason", "boredom"],
        ["token", "list", "--limit", "0"],
    ],
)
def test_bad_arguments_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert "usage: certtoken" in capsys.readouterr().err


def test_a_table_lines_up_and_keeps_one_line_per_row(capsys: pytest.CaptureFixture[str]) -> None:
    print_table(("SERIAL", "USER"), [("CRT1", "alice"), ("CRT22", "bob\nsmith"), ("CRT3", "")])
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["SERIAL  USER", "CRT1    alice", "CRT22   bob smith", "CRT3    -"]


def test_an_unmigrated_database_is_one_line_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CERTTOKEN_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("CERTTOKEN_DATABASE_URL", raising=False)
    assert main(["token", "list", "--json"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("certtoken: database: no such table: token")
    assert "certtoken db upgrade" in err and "Traceback" not in err
