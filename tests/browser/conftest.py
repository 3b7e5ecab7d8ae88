"""Playwright on the system Chromium (never a downloaded browser), against pytest-django's live_server."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

import pytest

CHROMIUM = os.environ.get("ALABEL_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        if os.environ.get("ALABEL_REQUIRE_BROWSER"):
            pytest.fail(f"Chromium not found at {CHROMIUM} (install it: apt-get install chromium)")
        pytest.skip(f"Chromium not found at {CHROMIUM}; `apt-get install chromium` to run the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    # Closing fires the annotate page's pagehide beacon (release the lease). Sent after the test, it reached the live
    # server once the test's database was gone; the server thread then logged a traceback while pytest parsed source
    # in the main thread, and CPython 3.11.7's AST constructor is not thread-safe (gh-106905: "AST constructor
    # recursion depth mismatch" aborted a CI run). The test is over, so the release is not needed: mute the beacon.
    for open_page in context.pages:
        with contextlib.suppress(Exception):  # a page that crashed or is navigating away: nothing to mute
            open_page.evaluate("() => { navigator.sendBeacon = () => true; }")
    context.close()


def login(page, live_server, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
