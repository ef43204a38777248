"""The auth example's story in headless Chromium (Playwright, Debian's ``/usr/bin/chromium``).

Never ``playwright install``: it downloads a browser of its own. Without Chromium or Playwright the
test is skipped, saying why; under ``CI=true`` it fails instead.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.test_auth_example import serve_auth_demo

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
EMAIL = "<b>ann</b>@example.com"

HELLO_SCRIPT = """() => new Promise((resolve, reject) => {
    const ws = new WebSocket(location.origin.replace(/^http/, "ws") + "/ws");
    let message = null;
    ws.onmessage = (event) => { message = event.data; };
    ws.onclose = (event) => resolve([message, event.code]);
    ws.onerror = () => reject(new Error("websocket error"));
})"""


def missing() -> str | None:
    """Why the browser cannot run here, or None when it can."""
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed: pip install playwright (never `playwright install`)"
    if importlib.util.find_spec("websockets") is None and importlib.util.find_spec("wsproto") is None:
        return "uvicorn serves the demo's /ws only with websockets or wsproto: pip install websockets"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing: apt-get install -y chromium"
    return None


@pytest.fixture
def page(tmp_path: Path) -> Iterator[tuple[Page, str]]:
    reason = missing()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true needs the browser test: {reason}", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with (
        serve_auth_demo(tmp_path / "auth-sessions.db") as url,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            context = browser.new_context()
            context.set_default_timeout(10_000)
            yield context.new_page(), url
            context.close()
        finally:
            browser.close()


def shown_flashes(page: Page) -> list[tuple[str, str]]:
    """The flash messages the page shows, as ``(class, text)``, in order."""
    items: Any = page.locator("#flashes li").evaluate_all("items => items.map(li => [li.className, li.textContent])")
    return [(str(name), str(text)) for name, text in items]


def hello(page: Page) -> tuple[str, int]:
    """Open ``/ws`` from the page (with its cookies), return the message and the close code."""
    message, code = page.evaluate(HELLO_SCRIPT)
    return str(message), int(code)


def log_in(page: Page, email: str, password: str) -> None:
    page.fill("#email", email)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("#login-button")


def test_auth_story_in_chromium(page: tuple[Page, str]) -> None:
    tab, url = page
    tab.goto(url)
    assert shown_flashes(tab) == []
    assert tab.locator("#user").count() == 0
    response = tab.goto(f"{url}/admin")
    assert response is not None
    assert response.status == 401
    tab.goto(url)
    assert hello(tab) == ("hello anonymous", 1000)

    log_in(tab, EMAIL, "wrong")
    assert tab.url == f"{url}/"
    assert shown_flashes(tab) == [("flash flash-error", "Incorrect username or password")]
    assert tab.locator("#user").count() == 0

    log_in(tab, EMAIL, "correct")
    assert tab.url == f"{url}/"
    assert shown_flashes(tab) == [
        ("flash flash-success", "Login successful"),
        ("flash flash-info", f"Welcome back, {EMAIL}"),
    ]
    assert tab.locator("#user").text_content() == EMAIL, "shown as typed: escaped, not markup"
    assert tab.locator("#user b, #flashes b").count() == 0, "no element made of what the user typed"
    tab.reload()
    assert shown_flashes(tab) == [], "shown once"
    assert tab.locator("#user").text_content() == EMAIL
    assert hello(tab) == (f"hello {EMAIL}", 1000)

    with tab.expect_navigation() as navigation:
        tab.click("#admin-link")
    response = navigation.value
    assert response is not None
    assert response.status == 200
    assert tab.locator("body").inner_text().strip() == f"Admin {EMAIL}"

    tab.goto(url)
    with tab.expect_navigation():
        tab.click("#logout-button")
    assert tab.url == f"{url}/"
    assert shown_flashes(tab) == [("flash flash-info", "Logged out")]
    assert tab.locator("#user").count() == 0
    assert tab.locator("#login-button").count() == 1
    tab.reload()
    assert shown_flashes(tab) == []
    response = tab.goto(f"{url}/admin")
    assert response is not None
    assert response.status == 401
    tab.goto(url)
    assert hello(tab) == ("hello anonymous", 1000)
