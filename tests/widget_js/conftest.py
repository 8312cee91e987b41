"""Browser fixtures for the widget tests: real headless Chromium driven by Playwright.

The browser is started once per session; every test gets a fresh context (own storage,
cookies, cache) and fails if a page raises an uncaught JavaScript error.
"""

from __future__ import annotations

import os

import pytest

from tests.widget_js.fake_convot import FakeConvot

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--font-render-hinting=none"]


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/widget_js/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
async def browser():
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=os.environ.get("CONVOT_TEST_CHROMIUM", "/usr/bin/chromium"), args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


class PageErrors(list):
    """Uncaught errors, CSP violations and dialogs (alert/confirm/prompt) seen on a context's pages."""

    def __init__(self):
        super().__init__()
        self.dialogs: list[str] = []


@pytest.fixture
async def context(browser):
    ctx = await browser.new_context(viewport={"width": 1100, "height": 800}, device_scale_factor=1,
                                    reduced_motion="reduce", locale="en-GB", timezone_id="UTC")
    ctx.set_default_timeout(10_000)
    errors = PageErrors()

    def watch(page):
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text)
                if msg.type == "error" and "Content Security Policy" in msg.text else None)

        async def dismiss(dialog):
            errors.dialogs.append(dialog.message)
            await dialog.dismiss()

        page.on("dialog", dismiss)

    ctx.on("page", watch)
    ctx.errors = errors
    yield ctx
    await ctx.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
async def fake():
    server = FakeConvot()
    await server.start()
    yield server
    await server.close()
