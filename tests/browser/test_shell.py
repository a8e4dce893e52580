"""The UI's shell in chromium: login and logout, navigation by role, refusals in words, and a
login that expires mid-form coming back to the form as it was."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import (
    PHONE,
    VIEWPORTS,
    Ui,
    assert_accessible,
    session_token,
    shot,
    token_refused,
)
from tests.support.pki import make_csr
from tests.support.stack import ADMIN

pytestmark = pytest.mark.browser

USER_LINKS = ["My certificates", "Enroll"]
ADMIN_LINKS = ["Pending requests", "All tokens", "Event handlers", "Audit log", "SMTP servers"]
ADMIN_ROUTES = ["pending", "tokens", "events", "audit", "smtp"]
width = pytest.mark.parametrize("viewport", list(VIEWPORTS), ids=lambda w: f"w{w}")


def nav_links(page: Page) -> list[str]:
    """The main navigation's link texts, in order."""
    return [text.strip() for text in page.locator("#nav a").all_inner_texts()]


def assert_fits(page: Page) -> None:
    """Nothing makes the page scroll sideways."""
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{page.url} is {overflow}px wider than the viewport"


def login_form_shown(page: Page) -> None:
    """The login page is what the tab shows."""
    expect(page.locator("main h1")).to_have_text("Log in")
    expect(page.locator('input[name="password"]')).to_be_visible()


@width
def test_user_logs_in_sees_the_user_shell_and_logs_out(ui: Ui, viewport: str) -> None:
    page = ui.new_page(VIEWPORTS[viewport])
    login_form_shown(page)
    expect(page).to_have_title(re.compile("Log in"))
    assert nav_links(page) == []
    shot(page, "login")
    assert_accessible(page)
    assert_fits(page)

    ui.login(page, "alice@corp")
    expect(page).to_have_url(re.compile(r"#/certificates$"))
    expect(page.locator("#who")).to_contain_text("alice@corp (user)")
    assert nav_links(page) == USER_LINKS
    expect(page.locator('#nav a[aria-current="page"]')).to_have_text("My certificates")
    assert session_token(page)
    shot(page, "logged-in")
    assert_accessible(page)
    assert_fits(page)

    page.get_by_role("button", name="Log out").click()
    login_form_shown(page)
    expect(page.locator("#notice")).to_have_text("You are logged out.")
    assert nav_links(page) == []
    assert session_token(page) == ""
    shot(page, "logged-out")
    assert_accessible(page)
    # The login is gone from the tab: its pages lead back to the login form.
    page.goto(ui.url + "#/enroll")
    login_form_shown(page)


@width
def test_admin_logs_in_and_sees_the_admin_navigation(ui: Ui, viewport: str) -> None:
    page = ui.new_page(VIEWPORTS[viewport])
    ui.login(page, ADMIN)
    expect(page.locator("#who")).to_contain_text("admin (admin)")
    assert nav_links(page) == USER_LINKS + ADMIN_LINKS
    shot(page, "logged-in")
    assert_accessible(page)
    assert_fits(page)
    page.get_by_role("link", name="Audit log").click()
    expect(page).to_have_url(re.compile(r"#/audit$"))
    expect(page.locator('#nav a[aria-current="page"]')).to_have_text("Audit log")
    expect(page.locator("main h1")).to_be_visible()
    shot(page, "audit")
    assert_accessible(page)


def test_a_wrong_password_is_said_in_words_next_to_the_form(ui: Ui) -> None:
    page = ui.new_page()
    form = page.locator("main form")
    page.locator('input[name="username"]').fill("alice@corp")
    page.get_by_role("button", name="Log in").click()
    # Nothing sent without a password: the field itself says so.
    password_error = form.locator('.field[data-field="password"] .field-error')
    expect(password_error).to_have_text("password: required")
    expect(page.locator('input[name="password"]')).to_have_attribute("aria-invalid", "true")
    shot(page, "password-missing")

    page.locator('input[name="password"]').fill("not-alices-password")
    page.get_by_role("button", name="Log in").click()
    alert = form.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text(re.compile(r"wrong|invalid|not", re.IGNORECASE))
    expect(password_error).to_be_hidden()
    login_form_shown(page)
    assert session_token(page) == ""
    shot(page, "password-wrong")
    assert_accessible(page)

    page.locator('input[name="password"]').fill(ui.users["alice"])
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#who")).to_contain_text("alice@corp")


def test_an_expired_login_comes_back_to_the_form_as_it_was(ui: Ui) -> None:
    page = ui.new_page()
    with ui.short_sessions(3):
        ui.login(page, "alice@corp")
    page.goto(ui.url + "#/enroll/csr")
    request = page.locator("main textarea[name]").first
    expect(request).to_be_visible()
    name = request.get_attribute("name")
    csr = make_csr("alice")
    request.fill(csr)
    shot(page, "half-filled")

    token = session_token(page)
    deadline = time.monotonic() + 15
    while not token_refused(ui.base, token):
        assert time.monotonic() < deadline, "the 3 s login never expired"
        time.sleep(0.2)
    if request.is_visible():  # a page that asked the API on input may already be back at login
        request.evaluate("(el) => el.form.requestSubmit()")

    login_form_shown(page)
    expect(page.locator("#notice")).to_contain_text("Your login has expired")
    expect(page).to_have_url(re.compile(r"#/login\?next="))
    assert session_token(page) == ""
    shot(page, "expired")
    assert_accessible(page)

    ui.login(page, "alice@corp")
    expect(page).to_have_url(re.compile(r"#/enroll/csr$"))
    expect(page.locator(f'main [name="{name}"]')).to_have_value(csr)
    expect(page.locator("#notice")).to_contain_text("what you entered is back")
    shot(page, "restored")
    assert_accessible(page)


def test_a_user_sees_no_admin_page(ui: Ui) -> None:
    page = ui.new_page(PHONE)
    loaded: list[str] = []
    page.on("request", lambda r: loaded.append(r.url))
    ui.login(page, "bob@corp")
    assert nav_links(page) == USER_LINKS
    for route in ADMIN_ROUTES:
        page.goto(f"{ui.url}#/{route}")
        expect(page).to_have_url(re.compile(r"#/certificates$"))
        expect(page.locator("main h1")).to_be_visible()
        expect(page.locator("main h1")).not_to_have_text(re.compile(route, re.IGNORECASE))
    assert not [u for u in loaded if re.search(r"/pages/(pending|tokens|events|audit|smtp)", u)]
    shot(page, "after-admin-routes")
    assert_accessible(page)


def test_a_user_cannot_open_another_users_token(ui: Ui) -> None:
    bobs = ui.enroll("bob")
    assert bobs["rollout_state"] == "enrolled"
    page = ui.new_page()
    ui.login(page, "alice@corp")
    page.goto(f"{ui.url}#/token/{bobs['serial']}")
    main = page.locator("main")
    expect(main.locator("h1")).to_be_visible()
    expect(main).to_contain_text("belongs to another user")
    expect(main).not_to_contain_text("BEGIN CERTIFICATE")
    expect(main).not_to_contain_text("bob")
    shot(page, "refused")
    assert_accessible(page)


def test_the_browser_enforces_the_csp_and_the_harness_reports_it(ui: Ui) -> None:
    page = ui.new_page()
    login_form_shown(page)
    # What an injection would add: an inline script, an inline style, an inline handler.
    page.evaluate(
        """() => {
          const script = document.createElement("script");
          script.textContent = "window.injected = true";
          document.body.append(script);
          const heading = document.querySelector("main h1");
          heading.setAttribute("style", "color: rgb(255, 0, 0)");
          const image = document.createElement("img");
          image.setAttribute("src", "data:,");
          image.setAttribute("onerror", "window.handled = true");
          document.body.append(image);
        }"""
    )
    expect(page.locator("main h1")).not_to_have_css("color", "rgb(255, 0, 0)")
    assert page.evaluate("() => [window.injected, window.handled]") == [None, None]
    reported: list[str] = []
    deadline = time.monotonic() + 10
    while len([p for p in reported if "CSP violation" in p]) < 3:
        assert time.monotonic() < deadline, f"violations not all reported: {reported}"
        page.wait_for_timeout(100)
        reported += ui.take_problems()
    directives = " ".join(reported)
    for directive in ("script-src-elem", "style-src-attr", "script-src-attr"):
        assert directive in directives, reported
