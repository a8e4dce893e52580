"""The web UI in Debian's chromium: a running system in a thread of its own, pages that fail
the test on a CSP violation or a script error, numbered screenshots, axe-core's check."""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import httpx
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Response, expect

from tests.support.pki import make_csr
from tests.support.stack import (
    ADMIN,
    ADMIN_PASSWORD,
    Stack,
    prepare,
    running_stack,
    settings_for,
)

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
AXE = ROOT / "tests" / "browser" / "vendor" / "axe.min.js"
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
VIEWPORTS = {"1280": DESKTOP, "390": PHONE}
REALM = "corp"
# The users every browser test finds, with their passwords (user@corp logs in).
USERS = {"alice": "Alice-Ui-Pw-7c1f", "bob": "Bob-Ui-Pw-2e9a"}
CA = "localca"
# A template of localca whose requests wait for a CA manager's approval.
APPROVAL_TEMPLATE = "approval"
TIMEOUT_MS = 10_000

# Reports every CSP violation to the console, where the page's watcher collects it. An init
# script is added through the DevTools protocol, so the page's CSP does not apply to it.
CSP_REPORTER = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI || "inline"}`
    + ` at ${event.sourceFile || "?"}:${event.lineNumber}`);
});
"""
AXE_RUN = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                   targets: v.nodes.map((n) => n.target.join(" ")) }));
}"""
# Chromium logs every 4xx/5xx answer as a console error; the UI shows API refusals on
# purpose, so those are judged by status in Watch.on_response instead.
RESOURCE_ERROR = re.compile(r"^Failed to load resource: the server responded with a status of ")


@cache
def axe_source() -> str:
    """The vendored axe-core script."""
    return AXE.read_text()


class RunningSystem:
    """``running_stack`` (in-process broker, SQLite) in its own thread and event loop, so
    the test's thread is free for Playwright's synchronous API."""

    def __init__(self, data_dir: Path, **overrides: Any) -> None:
        self.data_dir = data_dir
        self.overrides = overrides
        self._ready: Future[Stack] = Future()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._main(),), name="certtoken-ui-stack", daemon=True
        )

    def start(self) -> Stack:
        """Start the system; returns once the api answers."""
        self._thread.start()
        return self._ready.result(timeout=120)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            settings = settings_for(self.data_dir, **self.overrides)
            await prepare(settings)
            async with running_stack(settings) as stack:
                self._ready.set_result(stack)
                await self._stop.wait()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            raise

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run *coro* in the system's event loop (for its database or broker) and wait."""
        assert self._loop is not None, "the system is not running"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=60)

    def stop(self) -> None:
        """Stop the services and wait for the thread."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "the UI's system did not stop within 60 s"


@dataclass
class Watch:
    """What went wrong in one page: CSP violations, script errors, failed UI requests."""

    name: str
    problems: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("console", self.on_console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("response", self.on_response)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error" or RESOURCE_ERROR.match(message.text):
            return
        self.problems.append(f"console error: {message.text}")

    def on_response(self, response: Response) -> None:
        # A refusal of the API (4xx) is the UI's business; a missing file of the UI is not,
        # and neither is any 5xx.
        path = httpx.URL(response.url).path
        if response.status >= 500 or (response.status >= 400 and path.startswith("/ui/")):
            self.problems.append(f"{response.status} for {response.request.method} {path}")


class Shots:
    """Numbered screenshots of one test: test-artifacts/screenshots/<test>/NN-<step>.png."""

    def __init__(self, test_name: str) -> None:
        self.folder = SCREENSHOTS / re.sub(r"[^\w.@-]+", "-", test_name).strip("-")
        shutil.rmtree(self.folder, ignore_errors=True)
        self.count = 0

    def take(self, page: Page, step: str) -> Path:
        self.count += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        label = re.sub(r"[^\w.-]+", "-", step)
        path = self.folder / f"{self.count:02d}-{label}.png"
        page.screenshot(path=path, full_page=True)
        return path


# The running test's screenshots, for the module-level shot() (tests run one at a time).
_current: list[Shots] = []


def shot(page: Page, step: str) -> Path:
    """Screenshot *page* as the current test's next numbered step."""
    assert _current, "shot() outside a test using the ui fixture"
    return _current[-1].take(page, step)


def assert_accessible(page: Page) -> None:
    """Fail listing every serious or critical axe-core violation in *page* as it is now."""
    # evaluate() runs through the DevTools protocol: the page's CSP does not block it, where
    # a <script> tag with the same source would be refused.
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_source())
    violations: list[dict[str, Any]] = page.evaluate(AXE_RUN)
    lines = [
        f"{v['impact']} {v['id']}: {v['help']} at {', '.join(v['targets'])}" for v in violations
    ]
    assert not lines, f"axe-core on {page.url}:\n" + "\n".join(lines)


class Ui:
    """One test's handle on the UI: the running system, new pages, logins, API shortcuts."""

    def __init__(self, system: RunningSystem, stack: Stack, browser: Browser, test: str) -> None:
        self.system = system
        self.stack = stack
        self.browser = browser
        self.base = stack.url
        self.url = f"{stack.url}/ui/"
        self.users = dict(USERS)
        self.shots = Shots(test)
        self._contexts: list[BrowserContext] = []
        self._watches: list[Watch] = []

    # --- pages ---------------------------------------------------------------------------

    def new_page(self, viewport: dict[str, int] | None = None, *, path: str = "") -> Page:
        """A fresh tab (own sessionStorage) at /ui/<path>, 1280x800 unless *viewport*."""
        context = self.browser.new_context(
            viewport=viewport or DESKTOP, ignore_https_errors=True, locale="en-GB"
        )
        context.set_default_timeout(TIMEOUT_MS)
        context.add_init_script(CSP_REPORTER)
        self._contexts.append(context)
        page = context.new_page()
        watch = Watch(f"page {len(self._watches) + 1}")
        watch.attach(page)
        self._watches.append(watch)
        page.goto(self.url + path)
        return page

    def login(self, page: Page, username: str, password: str | None = None) -> None:
        """Log in through the login form; *password* defaults to the known user's."""
        if password is None:
            password = ADMIN_PASSWORD if username == ADMIN else self.users[username.split("@")[0]]
        form = page.locator("form", has=page.locator('input[name="password"]'))
        if not form.is_visible():
            page.goto(self.url + "#/login")
        page.locator('input[name="username"]').fill(username)
        page.locator('input[name="password"]').fill(password)
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("#who")).to_contain_text(username)
        expect(page.locator("main h1")).to_be_visible()

    def shot(self, page: Page, step: str) -> Path:
        """Screenshot *page* as this test's next numbered step."""
        return self.shots.take(page, step)

    def assert_accessible(self, page: Page) -> None:
        """axe-core finds nothing serious or critical in *page*."""
        assert_accessible(page)

    def problems(self) -> list[str]:
        """Everything the watched pages reported so far."""
        return [f"{w.name}: {p}" for w in self._watches for p in w.problems]

    def take_problems(self) -> list[str]:
        """What the pages reported so far, forgotten (for a test that provokes them)."""
        found = self.problems()
        for watch in self._watches:
            watch.problems.clear()
        return found

    def close(self) -> None:
        """Close this test's pages."""
        for context in self._contexts:
            context.close()
        self._contexts.clear()

    # --- the API, for preparing what a page shows -------------------------------------------

    def api(
        self, method: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Call the API (as the administrator unless *token*); the whole JSON body on 200."""
        headers = {"Authorization": token or self.token(ADMIN)}
        with httpx.Client(base_url=self.base, headers=headers, timeout=30) as client:
            answer = client.request(method, path, **kwargs)
        assert answer.status_code == 200, f"{method} {path}: {answer.status_code} {answer.text}"
        body: dict[str, Any] = answer.json()
        return body

    def token(self, username: str) -> str:
        """An access token for the administrator or a known user (``alice`` or ``alice@corp``)."""
        if username == ADMIN:
            body = {"username": ADMIN, "password": ADMIN_PASSWORD}
        else:
            name = username.split("@")[0]
            body = {"username": f"{name}@{REALM}", "password": self.users[name]}
        with httpx.Client(base_url=self.base, timeout=30) as client:
            answer = client.post("/auth", json=body)
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["result"]["value"]["token"]
        return token

    def enroll(
        self, user: str, *, template: str | None = None, cn: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        """Enroll a CSR for *user* of corp at localca as the administrator; the init detail."""
        body: dict[str, Any] = {
            "type": "certificate",
            "request": make_csr(cn or user),
            "ca": CA,
            "user": user,
            "realm": REALM,
            **extra,
        }
        if template:
            body["template"] = template
        detail: dict[str, Any] = self.api("POST", "/token/init", json=body)["detail"]
        return detail

    def pending_requests(self) -> list[dict[str, Any]]:
        """The requests localca holds for approval."""
        value = self.api("GET", f"/ca/{CA}/requests", params={"status": "pending"})
        requests: list[dict[str, Any]] = value["result"]["value"]["requests"]
        return requests

    @contextmanager
    def short_sessions(self, seconds: int) -> Iterator[None]:
        """Logins made inside expire after *seconds* (the api reads its settings per login)."""
        settings = self.stack.settings
        before = settings.jwt_lifetime_seconds
        settings.jwt_lifetime_seconds = seconds
        try:
            yield
        finally:
            settings.jwt_lifetime_seconds = before


def prepare_ui_data(ui: Ui) -> None:
    """Users alice and bob of corp with passwords, and localca's approval template."""
    for name, password in USERS.items():
        ui.api(
            "POST",
            "/user/",
            json={
                "user": name,
                "realm": REALM,
                "password": password,
                "email": f"{name}@example.org",
                "givenname": name.capitalize(),
            },
        )
    ui.api(
        "POST",
        f"/caconnector/{CA}/templates/{APPROVAL_TEMPLATE}",
        json={
            "approval": "required",
            "validity_days": 30,
            "subject_components": ["email", "realm"],
            "extended_key_usage": ["clientAuth", "emailProtection"],
        },
    )


def session_token(page: Page) -> str:
    """The access token the page's tab holds (its sessionStorage)."""
    token: str = page.evaluate(
        "() => JSON.parse(sessionStorage.getItem('certtoken.session') || '{}').token || ''"
    )
    return token


def token_refused(base: str, token: str) -> bool:
    """Whether the api refuses *token* now (expired or invalid)."""
    with httpx.Client(base_url=base, timeout=30) as client:
        answer = client.get("/token/", headers={"Authorization": token})
    return answer.status_code == 401
