"""A pending certificate in chromium: the owner reads what it waits for, and the pages update
by themselves (no reload) when a CA manager approves or denies it through the API."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import APPROVAL_TEMPLATE, CA, Ui, assert_accessible, shot
from tests.support.pki import make_csr

pytestmark = pytest.mark.browser

APPROVAL_WORDS = "Waiting for a CA manager's approval at certtoken."
# Two poll rounds of the page (2 s each) and the decision's own time, on a loaded machine.
DECIDED_MS = 15_000


def mark_page(page: Page) -> None:
    """Leave a mark in the page's window: a reload (or a new document) would lose it."""
    page.evaluate("() => { window.certtokenTestMark = 'kept'; }")


def still_marked(page: Page) -> bool:
    return bool(page.evaluate("() => window.certtokenTestMark === 'kept'"))


def request_of(ui: Ui, serial: str) -> str:
    """The id of the held request of token *serial*."""
    [held] = [r for r in ui.pending_requests() if r["serial"] == serial]
    return str(held["request_id"])


def test_a_pending_request_says_what_it_waits_for_and_the_list_updates_itself(ui: Ui) -> None:
    page = ui.new_page()
    ui.login(page, "alice@corp")
    page.goto(f"{ui.url}#/enroll/csr")
    page.get_by_label("Template").select_option(APPROVAL_TEMPLATE)
    page.get_by_label("Certificate request (PEM)").fill(make_csr("alice"))
    page.get_by_role("button", name="Show what it says").click()
    expect(page.locator(".review")).to_contain_text("CN=alice")
    page.get_by_role("button", name="Send the request").click()
    outcome = page.locator(".outcome")
    expect(outcome).to_contain_text(APPROVAL_WORDS)
    expect(outcome.locator(".badge")).to_have_text("pending")
    serial = (outcome.locator("a").get_attribute("href") or "").removeprefix("#/token/")
    shot(page, "enroll-pending")
    assert_accessible(page)

    page.get_by_role("link", name="My certificates").click()
    row = page.locator(f"#certificates-table tr[data-serial='{serial}']")
    expect(row.locator(".badge")).to_have_text("pending")
    expect(row).to_contain_text(APPROVAL_WORDS)
    mark_page(page)
    shot(page, "list-pending")
    assert_accessible(page)

    ui.api("POST", f"/ca/{CA}/requests/{request_of(ui, serial)}/approve")
    expect(row.locator(".badge")).to_have_text("enrolled", timeout=DECIDED_MS)
    expect(row).not_to_contain_text(APPROVAL_WORDS)
    expect(row).to_contain_text(CA)
    expect(page.locator("#notice")).to_contain_text(f"Certificate {serial} is now enrolled")
    assert still_marked(page), "the list was reloaded instead of updating itself"
    shot(page, "list-approved")
    assert_accessible(page)


def test_the_details_page_updates_itself_when_the_request_is_denied(ui: Ui) -> None:
    held = ui.enroll("bob", template=APPROVAL_TEMPLATE)
    assert held["rollout_state"] == "pending"
    serial = held["serial"]
    page = ui.new_page()
    ui.login(page, "bob@corp")
    page.goto(f"{ui.url}#/token/{serial}")
    state = page.locator("section", has=page.locator("#state-title"))
    expect(state.locator(".badge")).to_have_text("pending")
    expect(state).to_contain_text(APPROVAL_WORDS)
    mark_page(page)
    shot(page, "details-pending")
    assert_accessible(page)

    reason = "bob asked for a name he may not have"
    ui.api("POST", f"/ca/{CA}/requests/{held['request_id']}/deny", json={"reason": reason})
    expect(state.locator(".badge")).to_have_text("denied", timeout=DECIDED_MS)
    expect(state).to_contain_text(re.compile(f"Denied: {reason}"))
    expect(page.locator("#notice")).to_contain_text(f"Certificate {serial} is now denied")
    assert still_marked(page), "the details page was reloaded instead of updating itself"
    shot(page, "details-denied")
    assert_accessible(page)


def test_a_held_generated_key_is_downloaded_from_the_details_page_after_approval(
    ui: Ui, tmp_path: Path
) -> None:
    page = ui.new_page()
    ui.login(page, "alice@corp")
    page.goto(f"{ui.url}#/enroll/genkey")
    page.get_by_label("Template").select_option(APPROVAL_TEMPLATE)
    page.get_by_role("button", name="Generate the key").click()
    outcome = page.locator(".outcome")
    expect(outcome).to_contain_text(APPROVAL_WORDS)
    expect(outcome).to_contain_text("After approval, download the PKCS#12 file")
    expect(outcome.get_by_role("button", name=re.compile("Download"))).to_have_count(0)
    password = (outcome.locator(".secret").text_content() or "").strip()
    assert password
    serial = (outcome.locator("a").get_attribute("href") or "").removeprefix("#/token/")
    shot(page, "genkey-pending")
    assert_accessible(page)

    ui.api("POST", f"/ca/{CA}/requests/{request_of(ui, serial)}/approve")
    page.goto(f"{ui.url}#/token/{serial}")
    expect(page.locator("#state-title .badge")).to_have_text("enrolled")
    with page.expect_download() as info:
        page.get_by_role("button", name=f"Key and certificate as PKCS#12 ({serial}.p12)").click()
    assert info.value.suggested_filename == f"{serial}.p12"
    saved = tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    opened = subprocess.run(
        ["openssl", "pkcs12", "-in", str(saved), "-passin", f"pass:{password}", "-nokeys"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert opened.returncode == 0 and "BEGIN CERTIFICATE" in opened.stdout, opened.stderr
    shot(page, "details-enrolled")
    assert_accessible(page)
