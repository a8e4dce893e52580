"""Make the README's screenshot docs/ui-certificates.png: alice's "My certificates" page
(1280 px wide) with tokens in several states, from a real running certtoken.

    .venv/bin/python -m tests.browser.make_screenshots
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from tests.support.browser import (
    APPROVAL_TEMPLATE,
    CA,
    CHROMIUM,
    DESKTOP,
    ROOT,
    RunningSystem,
    Ui,
    assert_accessible,
    prepare_ui_data,
)

TARGET = ROOT / "docs" / "ui-certificates.png"


def make_tokens(ui: Ui) -> dict[str, str]:
    """alice's tokens: enrolled, pending, denied, revoked; their serials by state."""
    serials = {"enrolled": ui.enroll("alice", cn="alice laptop")["serial"]}
    serials["pending"] = ui.enroll("alice", template=APPROVAL_TEMPLATE, cn="alice vpn")["serial"]
    denied = ui.enroll("alice", template=APPROVAL_TEMPLATE, cn="alice wifi")
    serials["denied"] = denied["serial"]
    ui.api(
        "POST",
        f"/ca/{CA}/requests/{denied['request_id']}/deny",
        json={"reason": "a device certificate is not needed for wifi"},
    )
    serials["revoked"] = ui.enroll("alice", cn="alice old phone")["serial"]
    ui.api("POST", "/token/revoke", json={"serial": serials["revoked"], "reason": "keyCompromise"})
    return serials


def wait_for_states(ui: Ui, serials: dict[str, str]) -> None:
    """Wait (bounded) until each token is in the state it stands for."""
    deadline = time.monotonic() + 30
    while True:
        tokens = ui.api("GET", "/token/", params={"user": "alice", "realm": "corp"})
        states = {t["serial"]: t["certtoken_state"] for t in tokens["result"]["value"]["tokens"]}
        if all(states.get(serial) == state for state, serial in serials.items()):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"tokens never reached their states: {states} (wanted {serials})")
        time.sleep(0.2)


def main() -> int:
    """Start certtoken, make alice's tokens, screenshot her certificates page."""
    with tempfile.TemporaryDirectory(prefix="certtoken-screenshots-") as tmp:
        system = RunningSystem(Path(tmp) / "data")
        stack = system.start()
        try:
            args = ["--no-sandbox"] if os.geteuid() == 0 else []
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=args
                )
                ui = Ui(system, stack, browser, "make_screenshots")
                prepare_ui_data(ui)
                serials = make_tokens(ui)
                wait_for_states(ui, serials)
                page = ui.new_page(DESKTOP)
                ui.login(page, "alice@corp")
                expect(page.locator("main h1")).to_have_text("My certificates")
                for serial in serials.values():
                    expect(page.locator("main")).to_contain_text(serial)
                page.locator("body").evaluate("(body) => document.activeElement?.blur()")
                assert_accessible(page)
                TARGET.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=TARGET, full_page=True)
                problems = ui.problems()
                ui.close()
                browser.close()
        finally:
            system.stop()
    if problems:
        print("the page reported problems:\n" + "\n".join(problems), file=sys.stderr)
        return 1
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
