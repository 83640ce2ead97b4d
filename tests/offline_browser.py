"""Headless Chromium for the tests, offline: every request that is not local is aborted and kept.

Debian's /usr/bin/chromium, driven by Playwright (never `playwright install`). A missing browser
is a failure, never a skip.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")


@contextlib.contextmanager
def chromium():
    """A launched headless Chromium, closed afterwards."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's Chromium. "
            "Install it with `scripts/ensure-system-packages` (or `apt-get install -y chromium`)."
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class OfflineTab:
    """One page loaded from ``url`` with the network cut off.

    ``network`` lists every non-local URL the page tried to load (each was aborted);
    ``console_errors`` the console errors and uncaught exceptions.
    """

    def __init__(self, browser, url: str):
        self.network: list[str] = []
        self.console_errors: list[str] = []
        self.context = browser.new_context(
            viewport={"width": 1280, "height": 900}, service_workers="block"
        )
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("request", self._record)
        self.page.on(
            "console", lambda msg: msg.type == "error" and self.console_errors.append(msg.text)
        )
        self.page.on("pageerror", lambda error: self.console_errors.append(f"uncaught: {error}"))
        self.page.goto(url, wait_until="load")

    def wait_for_mathjax(self, timeout_ms: int = 20_000) -> None:
        self.page.wait_for_function(
            "() => window.MathJax && MathJax.startup && MathJax.startup.promise",
            timeout=timeout_ms,
        )
        self.page.evaluate("() => MathJax.startup.promise")

    def _record(self, request):
        if not request.url.startswith(LOCAL_SCHEMES):
            self.network.append(request.url)

    def _route(self, route):
        if route.request.url.startswith(LOCAL_SCHEMES):
            route.continue_()
        else:
            self.network.append(route.request.url)
            route.abort()
