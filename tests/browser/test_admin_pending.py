"""The CA manager's pending requests in chromium: one approved, one denied with a reason, while
the owner's page (another browser) changes its badges by itself; a new request shows up alone."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.support.browser import (
    APPROVAL_TEMPLATE,
    CA,
    PHONE,
    REALM,
    Ui,
    assert_accessible,
    shot,
)
from tests.support.pki import make_csr
from tests.support.stack import ADMIN

pytestmark = pytest.mark.browser

REASON = "Not on the staff list for this certificate."


def request_as(ui: Ui, user: str) -> dict[str, Any]:
    """*user* asks for a certificate under the approval template: the init detail (pending)."""
    body = {
        "type": "certificate",
        "request": make_csr(user),
        "ca": CA,
        "template": APPROVAL_TEMPLATE,
    }
    with httpx.Client(base_url=ui.base, timeout=30) as client:
        answer = client.post("/token/init", json=body, headers={"Authorization": ui.token(user)})
    assert answer.status_code == 200, answer.text
    detail: dict[str, Any] = answer.json()["detail"]
    assert detail["rollout_state"] == "pending", detail
    return detail


def card(page: Page, request: dict[str, Any]) -> Locator:
    """The pending page's card of *request*."""
    return page.locator(f'article[data-request="{request["request_id"]}"]')


def owner_badge(page: Page, serial: str) -> Locator:
    """The first state badge of *serial*'s row in the owner's list."""
    return page.locator(f'tr[data-serial="{serial}"] .badge').first


def confirm(page: Page, button: str) -> None:
    """Confirm the open dialog with *button*."""
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    shot(page, f"confirm-{button.lower()}")
    dialog.get_by_role("button", name=button).click()
    expect(dialog).to_be_hidden()


def test_manager_approves_one_denies_another_and_the_owner_sees_it(ui: Ui) -> None:
    first = request_as(ui, "alice")
    second = request_as(ui, "alice")

    owner = ui.new_page()
    ui.login(owner, "alice@corp")
    expect(owner).to_have_url(re.compile(r"#/certificates$"))
    expect(owner_badge(owner, first["serial"])).to_have_text("pending")
    expect(owner_badge(owner, second["serial"])).to_have_text("pending")
    shot(owner, "owner-waiting")

    manager = ui.new_page()
    ui.login(manager, ADMIN)
    manager.get_by_role("link", name="Pending requests").click()
    expect(manager.locator("main h1")).to_have_text("Pending requests")
    section = manager.get_by_role("region", name=f"CA {CA}")
    approve_card, deny_card = card(manager, first), card(manager, second)
    expect(section.locator("article")).to_have_count(2)
    expect(approve_card).to_contain_text(f"alice@{REALM}")
    expect(approve_card).to_contain_text("alice@corp (the owner)")
    expect(approve_card).to_contain_text(APPROVAL_TEMPLATE)
    expect(approve_card).to_contain_text("CN=alice")
    expect(approve_card).to_contain_text("EC secp256r1 (256 bits)")
    expect(approve_card).to_contain_text("not verified")
    expect(approve_card).to_contain_text("less than a minute ago")
    expect(manager.locator(".pending-count")).to_have_text("2 requests wait for a decision.")
    shot(manager, "manager-two-waiting")
    assert_accessible(manager)

    approve_card.get_by_role("button", name="Approve").click()
    confirm(manager, "Approve")
    outcome = manager.locator(".decisions li").first
    expect(outcome).to_have_text(
        f"Approved: the certificate for alice@corp's request {first['serial']} was issued."
    )
    expect(approve_card).to_have_count(0)
    expect(outcome).to_be_focused()
    expect(owner_badge(owner, first["serial"])).to_have_text("enrolled")
    shot(manager, "manager-approved")
    shot(owner, "owner-enrolled")

    # Denying needs a reason, said next to its field before anything is asked.
    deny_card.get_by_role("button", name="Deny").click()
    reason = deny_card.get_by_label("Reason for denying")
    expect(reason).to_have_attribute("aria-invalid", "true")
    expect(deny_card.locator(".field-error")).to_have_text("reason: say why the request is denied")
    expect(manager.get_by_role("dialog")).to_have_count(0)
    shot(manager, "manager-reason-missing")
    reason.fill(REASON)
    deny_card.get_by_role("button", name="Deny").click()
    confirm(manager, "Deny")
    expect(outcome).to_have_text(
        f"Denied: alice@corp's request {second['serial']} is denied. Reason given: {REASON}"
    )
    expect(deny_card).to_have_count(0)
    expect(section).to_contain_text("No requests wait for a decision.")
    expect(owner_badge(owner, second["serial"])).to_have_text("denied")
    expect(owner.locator(f'tr[data-serial="{first["serial"]}"] .badge').first).to_have_text(
        "enrolled"
    )
    shot(manager, "manager-denied")
    shot(owner, "owner-denied")
    assert_accessible(manager)
    assert_accessible(owner)

    # What the manager decided is what the API keeps.
    tokens = ui.api("GET", "/token/", params={"user": "alice", "realm": REALM})
    states = {t["serial"]: t for t in tokens["result"]["value"]["tokens"]}
    assert states[first["serial"]]["certtoken_state"] == "enrolled"
    assert states[second["serial"]]["certtoken_state"] == "denied"
    assert states[second["serial"]]["info"]["reason"] == REASON

    # A new request shows up on the open page by itself.
    third = request_as(ui, "bob")
    expect(card(manager, third)).to_contain_text("bob@corp (the owner)")
    expect(manager.locator(".pending-count")).to_have_text("1 request waits for a decision.")
    shot(manager, "manager-new-request")


def test_a_decision_the_api_refuses_is_said_and_the_phone_layout(ui: Ui) -> None:
    held = request_as(ui, "bob")
    manager = ui.new_page(PHONE)
    ui.login(manager, ADMIN)
    manager.goto(f"{ui.url}#/pending")
    shown = card(manager, held)
    expect(shown).to_be_visible()
    shot(manager, "phone-pending")
    assert_accessible(manager)
    overflow = manager.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the pending page is {overflow}px wider than the phone"

    # Another manager decides while this one confirms: the approval is refused in the API's words.
    shown.get_by_role("button", name="Approve").click()
    expect(manager.get_by_role("dialog")).to_be_visible()
    ui.api("POST", f"/ca/{CA}/requests/{held['request_id']}/deny", json={"reason": "dup"})
    confirm(manager, "Approve")
    outcome = manager.locator(".decisions li").first
    expect(outcome).to_contain_text("Not approved: request:")
    expect(outcome).to_contain_text("was already decided (deny by admin)")
    expect(shown).to_have_count(0)
    shot(manager, "phone-refused")
    assert_accessible(manager)
