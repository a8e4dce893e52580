"""The token owner enrolls in chromium by each of the three ways: a request (shown decoded
before it is sent), a key generated on the server (the PKCS#12 file downloaded and opened with
its password) and an uploaded certificate; a refused request is said next to its field."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from playwright.sync_api import Page, expect

from tests.support.browser import PHONE, Ui, assert_accessible, shot
from tests.support.pki import make_csr, self_signed_pem

pytestmark = pytest.mark.browser


def fits(page: Page) -> None:
    """Nothing makes the page scroll sideways."""
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{page.url} is {overflow}px wider than the viewport"


def outcome_serial(page: Page) -> str:
    """The serial the enrollment's outcome names (its link to the details page)."""
    link = page.locator(".outcome a[href^='#/token/']")
    expect(link).to_be_visible()
    serial = (link.get_attribute("href") or "").removeprefix("#/token/")
    assert re.fullmatch(r"CRT[0-9A-F]+", serial), serial
    return serial


def test_a_user_enrolls_a_request_seen_decoded_first(ui: Ui) -> None:
    page = ui.new_page()
    ui.login(page, "alice@corp")
    page.get_by_role("link", name="Enroll", exact=True).click()
    expect(page).to_have_url(re.compile(r"#/enroll$"))
    expect(page.get_by_role("link", name="Upload a request")).to_have_attribute(
        "aria-current", "page"
    )
    send = page.get_by_role("button", name="Send the request")
    expect(send).to_be_disabled()
    shot(page, "enroll-empty")
    assert_accessible(page)

    page.get_by_label("Certificate request (PEM)").fill(make_csr("alice"))
    page.get_by_role("button", name="Show what it says").click()
    review = page.locator(".review")
    expect(review).to_contain_text("CN=alice")
    expect(review).to_contain_text("SHA256", ignore_case=True)
    expect(review).to_contain_text(re.compile(r"(EC P-256|RSA \d+ bits)"))
    # Two CA connector templates at localca (default, approval): the choice is a select.
    expect(page.get_by_label("Template")).to_have_value("default")
    shot(page, "enroll-decoded")
    assert_accessible(page)

    send.click()
    expect(page.locator(".outcome h2")).to_contain_text("Enrolled")
    serial = outcome_serial(page)
    shot(page, "enroll-enrolled")
    assert_accessible(page)

    page.locator(".outcome a[href^='#/token/']").click()
    expect(page.locator("main h1")).to_have_text(f"Certificate {serial}")
    expect(page.locator("main")).to_contain_text("SHA-256 fingerprint")
    # No user policy grants alice revoke: the details page offers none (the API decides anyway).
    expect(page.get_by_role("button", name="Revoke…")).to_have_count(0)
    page.get_by_role("link", name="My certificates").click()
    row = page.locator(f"#certificates-table tr[data-serial='{serial}']")
    expect(row.locator(".badge")).to_have_text("enrolled")
    expect(row).to_contain_text("localca")
    shot(page, "certificates")
    assert_accessible(page)


def test_the_pages_read_at_390_px(ui: Ui) -> None:
    ui.enroll("bob")
    page = ui.new_page(PHONE)
    ui.login(page, "bob@corp")
    expect(page.locator("#certificates-table tbody tr").first).to_be_visible()
    fits(page)
    shot(page, "certificates-390")
    assert_accessible(page)
    for way in ("csr", "genkey", "upload"):
        page.goto(f"{ui.url}#/enroll/{way}")
        expect(page.locator(".tabs a[aria-current='page']")).to_be_visible()
        expect(page.locator("main form")).to_be_visible()
        fits(page)
        shot(page, f"enroll-{way}-390")
        assert_accessible(page)


def test_a_garbage_request_is_refused_next_to_its_field(ui: Ui) -> None:
    page = ui.new_page()
    ui.login(page, "alice@corp")
    page.goto(f"{ui.url}#/enroll/csr")
    field = page.locator('.field[data-field="request"]')
    page.get_by_label("Certificate request (PEM)").fill(
        "-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgY3Ny\n-----END CERTIFICATE REQUEST-----\n"
    )
    page.get_by_role("button", name="Show what it says").click()
    expect(field.locator(".field-error")).to_have_text(
        "csr: not a PEM-encoded PKCS#10 certificate signing request"
    )
    expect(page.get_by_label("Certificate request (PEM)")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("button", name="Send the request")).to_be_disabled()
    shot(page, "refused")
    assert_accessible(page)

    # A DER file is read as the request: the refusal goes, what it says is shown.
    der = x509.load_pem_x509_csr(make_csr("alice-der").encode()).public_bytes(Encoding.DER)
    page.get_by_label("…or choose the request file (PEM or DER)").set_input_files(
        files=[{"name": "alice.der", "mimeType": "application/octet-stream", "buffer": der}]
    )
    expect(page.locator(".review")).to_contain_text("CN=alice-der")
    expect(field.locator(".field-error")).to_be_hidden()
    expect(page.get_by_label("Certificate request (PEM)")).to_have_value(
        re.compile("^-----BEGIN CERTIFICATE REQUEST-----")
    )
    expect(page.get_by_role("button", name="Send the request")).to_be_enabled()


def test_a_generated_key_comes_as_a_pkcs12_file_with_its_password(ui: Ui, tmp_path: Path) -> None:
    page = ui.new_page()
    ui.login(page, "alice@corp")
    page.goto(f"{ui.url}#/enroll/genkey")
    expect(page.get_by_label("Key type")).to_be_visible()
    page.get_by_label("Key type").select_option("ec-p256")
    expect(page.get_by_label("PIN for the PKCS#12 file (optional)")).to_have_attribute(
        "type", "password"
    )
    shot(page, "genkey-form")
    assert_accessible(page)

    page.get_by_role("button", name="Generate the key").click()
    expect(page.locator(".outcome h2")).to_contain_text("Enrolled")
    serial = outcome_serial(page)
    password = (page.locator(".outcome .secret").text_content() or "").strip()
    assert len(password) >= 16
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy the password").click()
    expect(page.locator("#notice")).to_have_text("PKCS#12 password copied.")
    assert page.evaluate("() => navigator.clipboard.readText()") == password
    shot(page, "genkey-enrolled")
    assert_accessible(page)

    with page.expect_download() as info:
        page.get_by_role("button", name=f"Download {serial}.p12").click()
    downloaded = info.value
    assert downloaded.suggested_filename == f"{serial}.p12"
    saved = tmp_path / downloaded.suggested_filename
    downloaded.save_as(saved)
    opened = subprocess.run(
        ["openssl", "pkcs12", "-in", str(saved), "-passin", f"pass:{password}", "-nokeys"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert opened.returncode == 0, opened.stderr
    assert "-----BEGIN CERTIFICATE-----" in opened.stdout
    assert "subject=" in opened.stdout and "alice" in opened.stdout


def test_an_uploaded_certificate_is_seen_before_it_is_sent(ui: Ui) -> None:
    page = ui.new_page()
    ui.login(page, "alice@corp")
    page.goto(f"{ui.url}#/enroll/upload")
    upload = page.get_by_role("button", name="Upload the certificate")
    expect(upload).to_be_disabled()
    page.get_by_label("Certificate (PEM)").fill(self_signed_pem("alice-upload"))
    page.get_by_role("button", name="Show what it says").click()
    review = page.locator(".review")
    expect(review).to_contain_text("CN=alice-upload")
    expect(review).to_contain_text("SHA-256 fingerprint")
    shot(page, "upload-decoded")
    assert_accessible(page)

    upload.click()
    expect(page.locator(".outcome h2")).to_contain_text("Enrolled")
    serial = outcome_serial(page)
    shot(page, "upload-enrolled")
    assert_accessible(page)
    tokens = ui.api("GET", "/token/", params={"serial": serial})["result"]["value"]["tokens"]
    assert tokens[0]["username"] == "alice" and tokens[0]["certtoken_state"] == "enrolled"
