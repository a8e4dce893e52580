"""The administrator's pages in chromium: all tokens (filters, paging), event handlers (enable,
disable, dry run), the audit log (filters, a refusal next to its field) and SMTP servers (a
test mail that arrives at a real SMTP sink, and one the server cannot take)."""

from __future__ import annotations

import re
import socket
import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from services.ca_worker.ca_create import create_local_ca
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
from tests.support.smtp import SmtpSink
from tests.support.stack import ADMIN

pytestmark = pytest.mark.browser

CAROL = "carol"
OTHER_CA = "otherca"


def admin_page(ui: Ui, route: str, viewport: dict[str, int] | None = None) -> Page:
    """A tab with the administrator logged in, showing ``#/<route>``."""
    page = ui.new_page(viewport)
    ui.login(page, ADMIN)
    page.goto(f"{ui.url}#/{route}")
    expect(page.locator("main h1")).to_be_visible()
    return page


def on_phone(ui: Ui, page: Page, route: str) -> Page:
    """*page* narrowed to a phone's 390 px, showing ``#/<route>`` afresh."""
    page.set_viewport_size(PHONE)
    page.goto(f"{ui.url}#/{route}")
    page.reload()
    expect(page.locator("main h1")).to_be_visible()
    return page


def assert_fits(page: Page) -> None:
    """Nothing makes the page scroll sideways (wide tables scroll in their own region)."""
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{page.url} is {overflow}px wider than the viewport"


def admin_client(ui: Ui) -> httpx.Client:
    """The API as the administrator, logged in once (each ``ui.api`` call logs in again)."""
    return httpx.Client(base_url=ui.base, headers={"Authorization": ui.token(ADMIN)}, timeout=30)


def value(answer: httpx.Response) -> Any:
    """``result.value`` of a 200 answer."""
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]["value"]


def enroll(admin: httpx.Client, user: str, **extra: Any) -> dict[str, Any]:
    """Enroll a CSR for *user*@corp at localca (unless *extra* says otherwise); the detail."""
    body = {
        "type": "certificate",
        "request": make_csr(user),
        "ca": CA,
        "user": user,
        "realm": REALM,
    }
    answer = admin.post("/token/init", json={**body, **extra})
    assert answer.status_code == 200, answer.text
    detail: dict[str, Any] = answer.json()["detail"]
    return detail


def rows(page: Page) -> Any:
    """The body rows of the page's (first) table."""
    return page.locator("main table tbody tr")


def test_tokens_filter_by_user_state_and_ca_a_page_at_a_time(ui: Ui) -> None:
    ui.system.run(create_local_ca(ui.stack.settings, ui.stack.db, OTHER_CA))
    with admin_client(ui) as admin:
        value(
            admin.post("/user/", json={"user": CAROL, "realm": REALM, "email": "carol@example.org"})
        )
        made = [enroll(admin, CAROL) for _ in range(6)]
        held = enroll(admin, CAROL, template=APPROVAL_TEMPLATE)
        other = enroll(admin, CAROL, ca=OTHER_CA)
        value(admin.post("/token/revoke", json={"serial": made[0]["serial"]}))
    assert held["rollout_state"] == "pending"

    page = admin_page(ui, "tokens")
    expect(page.locator("main h1")).to_have_text("All tokens")
    shot(page, "all-tokens")
    assert_accessible(page)

    page.get_by_label("User").fill(CAROL)
    page.get_by_role("button", name="Filter", exact=True).click()
    pager = page.locator(".pager-where")
    expect(pager).to_have_text("Page 1 of 1 (8 tokens)")
    expect(page).to_have_url(re.compile(r"#/tokens\?user=carol$"))

    page.get_by_label("Per page").select_option("5")
    expect(pager).to_have_text("Page 1 of 2 (8 tokens)")
    expect(rows(page)).to_have_count(5)
    expect(page.get_by_role("button", name="Previous page")).to_be_disabled()
    shot(page, "carol-page-1")
    page.get_by_role("button", name="Next page").click()
    expect(pager).to_have_text("Page 2 of 2 (8 tokens)")
    expect(rows(page)).to_have_count(3)
    expect(page.get_by_role("button", name="Next page")).to_be_disabled()
    # Focus stays in the pager, where the keyboard user was.
    expect(page.locator(".pager-where")).to_be_focused()
    shot(page, "carol-page-2")
    assert_accessible(page)
    page.get_by_role("button", name="Previous page").click()
    expect(pager).to_have_text("Page 1 of 2 (8 tokens)")

    page.get_by_label("State").select_option("revoked")
    expect(pager).to_have_text("Page 1 of 1 (1 token)")
    expect(rows(page).first).to_contain_text(made[0]["serial"])
    expect(rows(page).first).to_contain_text("revoked")
    page.get_by_label("State").select_option("pending")
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_contain_text(held["serial"])
    expect(rows(page).first).to_contain_text("approval")
    page.get_by_label("State").select_option("")
    page.get_by_label("CA", exact=True).select_option(OTHER_CA)
    expect(pager).to_have_text("Page 1 of 1 (1 token)")
    expect(rows(page).first).to_contain_text(other["serial"])
    shot(page, "by-ca")
    # The filters live in the address: a reload shows the same list.
    page.reload()
    expect(page.locator(".pager-where")).to_have_text("Page 1 of 1 (1 token)")
    expect(page.get_by_label("User")).to_have_value(CAROL)

    # A refusal of the API is said next to the field it concerns.
    page.get_by_label("Realm").fill("not a realm!")
    page.get_by_role("button", name="Filter", exact=True).click()
    error = page.locator('.field[data-field="realm"] .field-error')
    expect(error).to_contain_text("realm")
    expect(page.get_by_label("Realm")).to_have_attribute("aria-invalid", "true")
    shot(page, "refused-realm")

    # Each row leads to the token's page.
    page.get_by_label("Realm").fill("")
    page.get_by_role("button", name="Filter", exact=True).click()
    page.get_by_role("link", name=other["serial"]).click()
    expect(page).to_have_url(re.compile(rf"#/token/{other['serial']}$"))

    phone = on_phone(ui, page, f"tokens?user={CAROL}&pagesize=5")
    expect(phone.locator(".pager-where")).to_have_text("Page 1 of 2 (8 tokens)")
    shot(phone, "phone")
    assert_accessible(phone)
    assert_fits(phone)


def add_handler(admin: httpx.Client, name: str, event: str, **conditions: str) -> int:
    body = {
        "name": name,
        "event": event,
        "handlermodule": "UserNotification",
        "action": "sendmail",
        "position": "post",
        "conditions": conditions,
        "options": {"To": "tokenowner", "subject": "{serial} for {username} is {rollout_state}"},
    }
    handler_id: int = value(admin.post("/event", json=body))
    return handler_id


def test_event_handlers_enable_disable_and_dry_run(ui: Ui) -> None:
    with admin_client(ui) as admin:
        enrolled = add_handler(admin, "mail-enrolled", "token_init", rollout_state="enrolled")
        add_handler(admin, "mail-pending", "token_init", rollout_state="pending")
        add_handler(admin, "mail-revoked", "token_revoke")
        token = enroll(admin, "alice")

    page = admin_page(ui, "events")
    expect(page.locator("main h1")).to_have_text("Event handlers")
    table = page.get_by_role("region", name="Event handlers")
    row = table.locator("tr", has=page.get_by_role("rowheader", name="mail-enrolled"))
    expect(row).to_contain_text("token_init")
    expect(row).to_contain_text("rollout_state = enrolled")
    expect(row).to_contain_text("send mail to the token owner")
    expect(row.locator(".badge")).to_have_text("active")
    shot(page, "handlers")
    assert_accessible(page)

    page.get_by_role("button", name="Disable handler mail-enrolled").click()
    expect(row.locator(".badge")).to_have_text("disabled")
    expect(page.get_by_role("button", name="Enable handler mail-enrolled")).to_be_focused()
    shown = ui.api("GET", f"/event/{enrolled}")["result"]["value"][0]
    assert shown["active"] is False
    shot(page, "disabled")

    # A disabled handler does not match, and the dry run says so.
    page.get_by_label("Event", exact=True).select_option("token_init")
    page.get_by_label("Token serial").fill(token["serial"])
    page.get_by_role("button", name="Try the event").click()
    verdict = page.locator(".verdict", has=page.locator("strong", has_text="mail-enrolled"))
    expect(verdict).to_contain_text("does not match because it is disabled")

    page.get_by_role("button", name="Enable handler mail-enrolled").click()
    expect(row.locator(".badge")).to_have_text("active")
    assert ui.api("GET", f"/event/{enrolled}")["result"]["value"][0]["active"] is True

    page.get_by_role("button", name="Try the event").click()
    expect(verdict).to_contain_text(
        f"mail-enrolled matches and would mail alice@example.org with subject "
        f"“{token['serial']} for alice is enrolled”"
    )
    pending = page.locator(".verdict", has=page.locator("strong", has_text="mail-pending"))
    expect(pending).to_contain_text(
        "does not match because its condition rollout_state fails: 'enrolled' is not 'pending'"
    )
    revoked = page.locator(".verdict", has=page.locator("strong", has_text="mail-revoked"))
    expect(revoked).to_contain_text("does not match because it is not bound to token_init")
    expect(page.get_by_role("status").filter(has_text="tried")).to_have_text(
        "3 handlers tried: 1 matches."
    )
    shot(page, "dry-run")
    assert_accessible(page)

    # One handler only; an unknown serial is said next to its field.
    page.get_by_label("Handler", exact=True).select_option(label="mail-pending")
    page.get_by_label("Rollout state").select_option("pending")
    page.get_by_role("button", name="Try the event").click()
    expect(page.locator(".verdict")).to_have_count(1)
    expect(page.locator(".verdict")).to_contain_text("mail-pending matches and would mail")
    page.get_by_label("Token serial").fill("CRT00000000")
    page.get_by_role("button", name="Try the event").click()
    expect(page.locator('.field[data-field="serial"] .field-error')).to_contain_text(
        "serial: no token CRT00000000"
    )
    shot(page, "unknown-serial")

    phone = on_phone(ui, page, "events")
    expect(phone.get_by_role("rowheader", name="mail-revoked")).to_be_visible()
    shot(phone, "phone")
    assert_accessible(phone)
    assert_fits(phone)


def test_audit_log_filters(ui: Ui) -> None:
    failed = {"action": "POST /token/revoke", "success": "false"}
    count = 0
    with admin_client(ui) as admin:
        token = enroll(admin, "bob")
        value(admin.post("/token/revoke", json={"serial": token["serial"]}))
        again = admin.post("/token/revoke", json={"serial": token["serial"]})
        assert again.status_code == 400, again.text
        # The audit log is written in the background: wait (bounded) for the failed revocation.
        for _ in range(100):
            count = admin.get("/audit/", params=failed).json()["result"]["value"]["count"]
            if count:
                break
            time.sleep(0.05)
    assert count == 1

    page = admin_page(ui, "audit")
    expect(page.locator("main h1")).to_have_text("Audit log")
    expect(rows(page).first).to_be_visible()
    shot(page, "audit")
    assert_accessible(page)

    page.get_by_label("Serial").fill(token["serial"])
    page.get_by_label("Action").fill("POST /token/init")
    page.get_by_role("button", name="Filter", exact=True).click()
    expect(page.locator(".pager-where")).to_have_text("Page 1 of 1 (1 entry)")
    expect(rows(page).first).to_contain_text("succeeded (200)")
    expect(rows(page).first).to_contain_text("bob@corp")
    expect(rows(page).first).to_contain_text("admin (admin)")
    expect(page).to_have_url(re.compile(r"#/audit\?action=POST"))
    shot(page, "by-serial")

    page.get_by_label("Serial").fill("")
    page.get_by_label("Action").fill("POST /token/revoke")
    page.get_by_label("Result").select_option("failed")
    expect(page.locator(".pager-where")).to_have_text("Page 1 of 1 (1 entry)")
    expect(rows(page).first).to_contain_text("POST /token/revoke")
    expect(rows(page).first).to_contain_text("failed (400)")
    shot(page, "failed-revocation")

    page.get_by_label("Result").select_option("succeeded")
    page.get_by_label("Action").fill("POST /token/r*")
    page.get_by_role("button", name="Filter", exact=True).click()
    expect(rows(page).first).to_contain_text("POST /token/revoke")
    expect(rows(page).first).to_contain_text("succeeded (200)")

    # A date range the API refuses is said next to the field it names.
    page.get_by_label("From (local time)").fill("2030-01-02T10:00")
    page.get_by_label("Until (local time)").fill("2030-01-01T10:00")
    page.get_by_role("button", name="Filter", exact=True).click()
    expect(page.locator('.field[data-field="since"] .field-error')).to_contain_text(
        "since: must not be after until"
    )
    page.get_by_label("Until (local time)").fill("2030-01-03T10:00")
    page.get_by_role("button", name="Filter", exact=True).click()
    expect(page.locator(".pager-where")).to_have_text("Page 1 of 1 (0 entries)")
    expect(rows(page).first).to_have_text("No entry matches these filters.")
    shot(page, "empty-range")
    assert_accessible(page)

    phone = on_phone(ui, page, "audit?action=POST%20/token/revoke&success=false")
    expect(phone.locator(".pager-where")).to_have_text("Page 1 of 1 (1 entry)")
    shot(phone, "phone")
    assert_accessible(phone)
    assert_fits(phone)


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_smtp_test_mail_arrives_and_a_refusal_is_said(ui: Ui, smtp_sink: SmtpSink) -> None:
    sink = {"server": smtp_sink.host, "port": smtp_sink.port, "sender": "certtoken@example.org"}
    with admin_client(ui) as admin:
        value(admin.post("/smtpserver/sink", json={**sink, "description": "test sink"}))
        value(admin.post("/smtpserver/nowhere", json={**sink, "port": closed_port(), "timeout": 2}))
    page = admin_page(ui, "smtp")
    expect(page.locator("main h1")).to_have_text("SMTP servers")
    sink_row = page.locator("tr", has=page.get_by_role("rowheader", name="sink"))
    expect(sink_row).to_contain_text(str(smtp_sink.port))
    expect(sink_row).to_contain_text("plain (no TLS)")
    expect(sink_row).to_contain_text("test sink")
    shot(page, "servers")
    assert_accessible(page)

    page.get_by_label("Through SMTP server").select_option("sink")
    page.get_by_label("To address").fill("ops@example.org")
    page.get_by_role("button", name="Send test mail").click()
    outcome = page.locator("p.said")
    expect(outcome).to_have_text(
        f"Sent to ops@example.org: accepted by {smtp_sink.host}:{smtp_sink.port}."
    )
    [mail] = smtp_sink.mails_to("ops@example.org")
    assert mail.message["Subject"] == "certtoken test mail from SMTP server sink"
    shot(page, "sent")

    page.get_by_label("Through SMTP server").select_option("nowhere")
    page.get_by_role("button", name="Send test mail").click()
    expect(outcome).to_contain_text("Not sent: nowhere")
    assert smtp_sink.count() == 1
    shot(page, "not-sent")

    page.get_by_label("To address").fill("not an address")
    page.get_by_role("button", name="Send test mail").click()
    expect(page.locator('.field[data-field="recipient"] .field-error')).to_contain_text("recipient")
    expect(outcome).to_be_hidden()
    shot(page, "bad-address")
    assert_accessible(page)

    phone = on_phone(ui, page, "smtp")
    expect(phone.get_by_role("rowheader", name="nowhere")).to_be_visible()
    shot(phone, "phone")
    assert_accessible(phone)
    assert_fits(phone)
