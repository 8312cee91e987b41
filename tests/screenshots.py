"""The documentation screenshots the browser tests take (docs/screenshots/).

A picture of a live page differs between runs in its moving parts -- times, generated
names and ids -- by about 1-2 % of its pixels.  A screenshot is therefore rewritten only when
its size changed or more than ``CHANGED_SHARE`` of its pixels differ, so a rerun leaves git
clean while a changed layout still refreshes the docs.  ``CONVOT_SCREENSHOTS=refresh``
rewrites every screenshot the run takes.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
CHANGED_SHARE = 0.05


def changed_share(old_png: bytes, new_png: bytes) -> float:
    """Share of pixels that differ (1.0 when the sizes differ)."""
    old = np.asarray(Image.open(io.BytesIO(old_png)).convert("RGB"))
    new = np.asarray(Image.open(io.BytesIO(new_png)).convert("RGB"))
    if old.shape != new.shape:
        return 1.0
    return float((old != new).any(axis=2).mean())


def save_screenshot(name: str, png: bytes) -> Path:
    path = SCREENSHOTS / name
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    if path.exists() and os.environ.get("CONVOT_SCREENSHOTS") != "refresh":
        try:
            if changed_share(path.read_bytes(), png) <= CHANGED_SHARE:
                return path
        except OSError:
            pass
    path.write_bytes(png)
    return path
