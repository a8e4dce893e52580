"""The backup, restore and secrets commands refuse bad passphrases and places before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.cli import main


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("CERTTOKEN_DATABASE_URL", "CERTTOKEN_SECRET_KEY", "CERTTOKEN_SECRET_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CERTTOKEN_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def test_the_passphrase_never_comes_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Not a terminal (pytest's stdin): no prompt, and no option takes the passphrase itself.
    assert main(["backup", str(tmp_path / "b")]) == 1
    assert "give --passphrase-file" in capsys.readouterr().err
    short = tmp_path / "short"
    short.write_text("too short\n")
    assert main(["backup", str(tmp_path / "b"), "--passphrase-file", str(short)]) == 1
    assert "at least 12 characters" in capsys.readouterr().err
    assert main(["restore", str(tmp_path / "b"), "--passphrase-file", str(tmp_path)]) == 1
    assert "--passphrase-file: " in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_restore_and_rotate_name_what_is_missing(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("a passphrase long enough\n")
    assert main(["restore", str(tmp_path / "none"), "--passphrase-file", str(passphrase)]) == 1
    assert "none: no such file" in capsys.readouterr().err
    assert main(["secrets", "rotate"]) == 1
    assert "no secret key to rotate" in capsys.readouterr().err
    assert not data_dir.exists()
