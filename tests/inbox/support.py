"""Helpers of the inbox's browser tests: signing in, the widget on the demo page, screenshots."""

from __future__ import annotations

import io
from pathlib import Path

from tests.inbox.conftest import SCREENSHOTS


async def sign_in(context, stack, email: str, password: str, path: str = "/app/"):
    """A page of the inbox, signed in, with the live connection up."""
    page = await context.new_page()
    await page.goto(stack.api + path)
    await page.wait_for_selector("form input[name=email]")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", password)
    await page.click("form button[type=submit]")
    await page.wait_for_selector(".conv-list")
    await wait_connected(page)
    return page


async def wait_connected(page):
    """The inbox's socket is authenticated (no connection banner) and the list has loaded."""
    await page.wait_for_selector("html[data-connection=ready]", state="attached")


async def open_demo_shop(context, stack):
    """The demo shop page with the widget connected; returns (page, widget frame)."""
    page = await context.new_page()
    await page.goto(stack.api + "/demo")
    handle = await page.wait_for_selector("iframe[data-convot]", state="attached")
    frame = await handle.content_frame()
    await frame.wait_for_selector(".launcher", state="attached")
    await frame.wait_for_function("() => document.querySelector('.presence') && document.querySelector('.presence').textContent !== ''")
    return page, frame


async def widget_send(frame, text: str) -> None:
    if await frame.is_hidden(".panel"):
        await frame.click(".launcher")
        await frame.wait_for_selector(".panel", state="visible")
    await frame.fill("#cv-input", text)
    await frame.press("#cv-input", "Enter")


async def widget_bubbles(frame) -> list[str]:
    return await frame.eval_on_selector_all(".msg .bubble", "els => els.map(e => e.textContent)")


async def inbox_bubbles(page) -> list[str]:
    return await page.eval_on_selector_all(".log .msg .bubble .text, .log .msg .bubble .deleted-text",
                                           "els => els.map(e => e.textContent)")


async def open_conversation_of(page, name_part: str):
    """Click the list row whose contact name contains ``name_part``; the thread is loaded."""
    row = page.locator(".conv-link", has_text=name_part).first
    await row.click()
    await page.wait_for_selector(".thread .log")
    await page.wait_for_function("() => !document.querySelector('.log p.empty') || "
                                 "document.querySelector('.log p.empty').textContent !== 'Loading messages…'")


def save_screenshot(name: str, png: bytes) -> Path:
    """docs/screenshots/<name>, rewritten only when the picture changed, so reruns leave git clean."""
    from PIL import Image, ImageChops

    path = SCREENSHOTS / name
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    if path.exists():
        try:
            old, new = Image.open(path).convert("RGB"), Image.open(io.BytesIO(png)).convert("RGB")
            if old.size == new.size and ImageChops.difference(old, new).getbbox() is None:
                return path
        except OSError:
            pass
    path.write_bytes(png)
    return path
