"""A certificate's details page in chromium: what it says, PEM and DER downloads, the PKCS#12
download and the API's refusal of it in words, and revocation with a reason after a
confirmation (offered where a user policy grants revoke)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import CA, REALM, Ui, assert_accessible, shot

pytestmark = pytest.mark.browser

# Once a user policy exists for corp, its users may do only what one grants.
USER_ACTIONS = "enrollCERTIFICATE, revoke, certificate_download_pkcs12"


@pytest.fixture
def may_revoke(ui: Ui) -> None:
    """A user policy lets corp's users enroll, revoke and download (set before they log in)."""
    policy = {"scope": "user", "action": USER_ACTIONS, "realm": REALM}
    ui.api("POST", "/policy/corp-owners", json=policy)


def open_details(ui: Ui, page: Page, serial: str) -> None:
    page.goto(f"{ui.url}#/token/{serial}")
    expect(page.locator("main h1")).to_have_text(f"Certificate {serial}")


def save(page: Page, button: str, folder: Path) -> Path:
    """Click *button* and save the file it offers under its suggested name."""
    with page.expect_download() as info:
        page.get_by_role("button", name=button).click()
    path = folder / info.value.suggested_filename
    info.value.save_as(path)
    return path


def test_details_downloads_and_revocation_with_a_reason(
    ui: Ui, may_revoke: None, tmp_path: Path
) -> None:
    enrolled = ui.enroll("alice")
    serial = enrolled["serial"]
    page = ui.new_page()
    ui.login(page, "alice@corp")
    open_details(ui, page, serial)
    main = page.locator("main")
    expect(main.locator("#state-title .badge")).to_have_text("enrolled")
    for words in ("SHA-256 fingerprint", "Issuer", "Valid until", "Extended key usage"):
        expect(main).to_contain_text(words)
    expect(main).to_contain_text(f"CN={CA}")
    shot(page, "details")
    assert_accessible(page)

    pem = save(page, f"Certificate as PEM ({serial}.pem)", tmp_path)
    assert pem.name == f"{serial}.pem"
    assert pem.read_text().strip() == enrolled["certificate"].strip()
    der = save(page, f"Certificate as DER ({serial}.cer)", tmp_path)
    assert der.name == f"{serial}.cer"
    parsed = subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-in", str(der), "-noout", "-subject"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert parsed.returncode == 0 and "alice" in parsed.stdout, parsed.stderr

    page.get_by_label("Reason").select_option("keyCompromise")
    page.get_by_role("button", name="Revoke…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Revoke certificate {serial}?")
    expect(dialog).to_contain_text("Key compromise")
    shot(page, "confirm")
    assert_accessible(page)
    dialog.get_by_role("button", name="Revoke").click()
    expect(main.locator("#state-title .badge")).to_have_text("revoked")
    expect(main).to_contain_text("Revoked (keyCompromise).")
    expect(page.get_by_role("button", name="Revoke…")).to_have_count(0)
    shot(page, "revoked")
    assert_accessible(page)
    [token] = ui.api("GET", "/token/", params={"serial": serial})["result"]["value"]["tokens"]
    assert token["certtoken_state"] == "revoked"
    assert token["info"]["revocation_reason"] == "keyCompromise"


def test_a_cancelled_revocation_revokes_nothing(ui: Ui, may_revoke: None) -> None:
    serial = ui.enroll("bob")["serial"]
    page = ui.new_page()
    ui.login(page, "bob@corp")
    open_details(ui, page, serial)
    page.get_by_role("button", name="Revoke…").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(page.locator("#state-title .badge")).to_have_text("enrolled")
    [token] = ui.api("GET", "/token/", params={"serial": serial})["result"]["value"]["tokens"]
    assert token["certtoken_state"] == "enrolled"


def test_the_pkcs12_download_and_its_refusal_in_words(
    ui: Ui, may_revoke: None, tmp_path: Path
) -> None:
    made = ui.api(
        "POST",
        "/token/init",
        json={
            "type": "certificate",
            "genkey": 1,
            "user": "bob",
            "realm": REALM,
            "ca": CA,
            "pin": "Bob-Pkcs12-Pin-5",
        },
    )["detail"]
    serial = made["serial"]
    page = ui.new_page()
    ui.login(page, "bob@corp")
    open_details(ui, page, serial)
    p12 = save(page, f"Key and certificate as PKCS#12 ({serial}.p12)", tmp_path)
    assert p12.name == f"{serial}.p12"
    opened = subprocess.run(
        ["openssl", "pkcs12", "-in", str(p12), "-passin", "pass:Bob-Pkcs12-Pin-5", "-nokeys"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert opened.returncode == 0 and "BEGIN CERTIFICATE" in opened.stdout, opened.stderr

    ui.api("POST", f"/token/{serial}/pkcs12/delete")
    page.get_by_role("button", name=f"Key and certificate as PKCS#12 ({serial}.p12)").click()
    refusal = page.locator("section", has=page.locator("#downloads-title")).get_by_role("alert")
    expect(refusal).to_have_text(f"serial: the PKCS#12 of token {serial} was deleted")
    shot(page, "pkcs12-refused")
    assert_accessible(page)
