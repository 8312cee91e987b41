"""Helpers shared by the widget's browser tests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from tests.screenshots import save_screenshot  # noqa: F401  (the tests import it from here)

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "widget_js" / "src"
# The sources minus boot.js: every function and class of the widget, nothing started.
CORE_SOURCES = ("util.js", "core.js", "ui.js", "widget.js", "protocol.js")


async def widget_frame(page):
    """The widget's iframe document (a Playwright Frame), once it is built."""
    handle = await page.wait_for_selector("iframe[data-convot]", state="attached")
    frame = await handle.content_frame()
    await frame.wait_for_selector(".launcher", state="attached")
    return frame


async def load_page(context, fake, name="shop", **page_options):
    """A shop page with the widget, connected and authenticated; returns (page, frame)."""
    page = await context.new_page()
    before = len(fake.widget_frames("authenticate"))
    await page.goto(fake.page(name, **page_options))
    frame = await widget_frame(page)
    await fake.wait_for(lambda: len(fake.widget_frames("authenticate")) > before, what="authenticate frame")
    await frame.wait_for_function("document.querySelector('.presence').textContent !== ''")
    return page, frame


async def open_panel(frame):
    await frame.click(".launcher")
    await frame.wait_for_selector(".panel", state="visible")


async def send(frame, text):
    await frame.fill("#cv-input", text)
    await frame.press("#cv-input", "Enter")


async def bubbles(frame) -> list[str]:
    """Text of every message bubble in order (own and agents')."""
    return await frame.eval_on_selector_all(".msg .bubble", "els => els.map(e => e.textContent)")


async def core_page(context):
    """A blank page with the widget's sources loaded but not started (pure functions testable)."""
    page = await context.new_page()
    await page.set_content("<!DOCTYPE html><html><body></body></html>")
    await page.add_script_tag(content="var CSS_TEXT = '';")
    for name in CORE_SOURCES:
        await page.add_script_tag(content=(SRC / name).read_text())
    return page


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"), dtype=np.int16)


def pixel_difference(a: bytes, b: bytes, mask: np.ndarray | None = None) -> tuple[tuple, tuple, float]:
    """(size a, size b, share of pixels differing by more than 8 levels in any channel).

    ``mask`` (booleans, same height and width) limits the comparison to the True pixels.
    """
    pa, pb = pixels(a), pixels(b)
    if pa.shape != pb.shape:
        return pa.shape, pb.shape, 1.0
    differing = np.abs(pa - pb).max(axis=2) > 8
    if mask is not None:
        differing = differing[mask]
    return pa.shape, pb.shape, float(differing.mean())


def rounded_rect_mask(width: int, height: int, radius: int) -> np.ndarray:
    """True inside a rectangle with rounded corners (the opaque part of a rounded element)."""
    y, x = np.mgrid[0:height, 0:width] + 0.5
    cx = np.clip(x, radius, width - radius)
    cy = np.clip(y, radius, height - radius)
    return (x - cx) ** 2 + (y - cy) ** 2 <= (radius - 1) ** 2
