"""A pkcs11 connector's options: which module, which PIN file, and the errors naming them."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.ca_worker.connectors.base import PermanentCAError
from services.ca_worker.keystores.pkcs11 import MODULE_SETTING, Pkcs11Config

URI = "pkcs11:token=certtoken;object=ca"


def config(options: dict[str, str], data_dir: Path = Path("/data")) -> Pkcs11Config:
    return Pkcs11Config.from_options("hsmca", options, data_dir)


def test_module_from_the_uri_wins_over_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODULE_SETTING, "/usr/lib/other.so")
    got = config({"pkcs11_uri": URI + "?module-path=/usr/lib/m.so", "pkcs11_pin_file": "pin"})
    assert got.module_path == "/usr/lib/m.so"
    assert config({"pkcs11_uri": URI, "pkcs11_pin_file": "pin"}).module_path == "/usr/lib/other.so"


def test_pin_file_relative_to_the_data_dir_or_from_pin_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(MODULE_SETTING, "/usr/lib/m.so")
    assert config({"pkcs11_uri": URI, "pkcs11_pin_file": "hsm/pin"}).pin_file == Path(
        "/data/hsm/pin"
    )
    assert config({"pkcs11_uri": URI, "pkcs11_pin_file": "/etc/pin"}).pin_file == Path("/etc/pin")
    sourced = config({"pkcs11_uri": URI + "?pin-source=file:/run/pin"})
    assert sourced.pin_file == Path("/run/pin")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "option 'pkcs11_uri' is required"),
        ({"pkcs11_uri": URI}, "option 'pkcs11_pin_file' is required"),
        ({"pkcs11_uri": "pkcs11:object=ca", "pkcs11_pin_file": "p"}, "must name the token"),
        ({"pkcs11_uri": "pkcs11:token=t", "pkcs11_pin_file": "p"}, "must name the key"),
        ({"pkcs11_uri": URI + "?module-name=softhsm2", "pkcs11_pin_file": "p"}, "module-name"),
        ({"pkcs11_uri": URI + ";colour=red", "pkcs11_pin_file": "p"}, "pkcs11_uri: unknown"),
    ],
)
def test_errors_name_the_connector_and_the_option(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, str], message: str
) -> None:
    monkeypatch.setenv(MODULE_SETTING, "/usr/lib/m.so")
    with pytest.raises(PermanentCAError) as refused:
        config(options)
    assert str(refused.value).startswith("CA connector 'hsmca': ")
    assert message in str(refused.value)


def test_no_module_anywhere_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODULE_SETTING, raising=False)
    with pytest.raises(
        PermanentCAError, match=f"module-path in pkcs11_uri or set {MODULE_SETTING}"
    ):
        config({"pkcs11_uri": URI, "pkcs11_pin_file": "pin"})


def test_pin_file_problems_never_show_the_pin(tmp_path: Path) -> None:
    got = Pkcs11Config.from_options(
        "hsmca",
        {"pkcs11_uri": URI + "?module-path=/m.so", "pkcs11_pin_file": "pin"},
        tmp_path,
    )
    with pytest.raises(PermanentCAError, match="cannot read the PIN file"):
        got.read_pin()
    (tmp_path / "pin").write_text("\n")
    with pytest.raises(PermanentCAError, match="is empty"):
        got.read_pin()
    (tmp_path / "pin").write_text("s3cret-pin\r\n")
    assert got.read_pin() == "s3cret-pin"
    assert "s3cret" not in repr(got)
