"""The owner's pages as an administrator sees them in chromium: anyone's certificates by
user@realm, enrolling for a user (a refusal said next to the owner field), and a user whose
enrollment policy fixes the CA connector and template reads them as text, not as a choice."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.support.browser import CA, REALM, Ui, assert_accessible, shot
from tests.support.pki import make_csr
from tests.support.stack import ADMIN

pytestmark = pytest.mark.browser


def test_an_admin_filters_by_user_and_enrolls_for_one(ui: Ui) -> None:
    alices = ui.enroll("alice")["serial"]
    bobs = ui.enroll("bob")["serial"]
    page = ui.new_page()
    ui.login(page, ADMIN)
    page.get_by_label("User (user@realm)").fill("alice@corp")
    page.get_by_role("button", name="Show").click()
    table = page.locator("#certificates-table")
    expect(table.locator("caption")).to_have_text("Certificates of alice@corp")
    expect(table.locator(f"tr[data-serial='{alices}']")).to_contain_text("alice@corp")
    expect(table.locator(f"tr[data-serial='{bobs}']")).to_have_count(0)
    shot(page, "filtered")
    assert_accessible(page)

    page.goto(f"{ui.url}#/enroll/csr")
    owner = page.get_by_label("Owner (user@realm)")
    owner.fill("nobody@corp")
    page.get_by_label("Certificate request (PEM)").fill(make_csr("nobody"))
    page.get_by_role("button", name="Show what it says").click()
    expect(page.locator(".review")).to_contain_text("CN=nobody")
    page.get_by_role("button", name="Send the request").click()
    error = page.locator('.field[data-field="user"] .field-error')
    expect(error).to_have_text("user: unknown user 'nobody' in realm 'corp'")
    expect(owner).to_have_attribute("aria-invalid", "true")
    shot(page, "unknown-owner")
    assert_accessible(page)

    owner.fill("bob@corp")
    page.get_by_role("button", name="Send the request").click()
    expect(page.locator(".outcome h2")).to_contain_text("Enrolled")
    expect(error).to_be_hidden()
    serial = (page.locator(".outcome a").get_attribute("href") or "").removeprefix("#/token/")
    [token] = ui.api("GET", "/token/", params={"serial": serial})["result"]["value"]["tokens"]
    assert (token["username"], token["user_realm"]) == ("bob", REALM)


def test_a_template_fixed_by_policy_is_shown_not_chosen(ui: Ui) -> None:
    page = ui.new_page()
    ui.login(page, "alice@corp")
    page.goto(f"{ui.url}#/enroll/genkey")
    # Two templates at localca: a choice.
    expect(page.locator("select[name='template']")).to_be_visible()
    policy = {
        "scope": "enroll",
        "action": f"certificate_ca_connector={CA}, certificate_template=default",
        "realm": REALM,
    }
    ui.api("POST", "/policy/corp-fixed-template", json=policy)
    try:
        page.reload()
        fixed = page.locator('.field[data-field="template"]')
        expect(fixed).to_contain_text("Template: default")
        expect(page.locator("select[name='template']")).to_have_count(0)
        expect(page.locator('.field[data-field="ca"]')).to_contain_text(f"CA connector: {CA}")
        shot(page, "fixed")
        assert_accessible(page)
        page.get_by_role("button", name="Generate the key").click()
        expect(page.locator(".outcome h2")).to_contain_text("Enrolled")
    finally:
        ui.api("DELETE", "/policy/corp-fixed-template")
