"""The rule that keeps reruns of the browser tests from rewriting the docs' screenshots."""

import io

import numpy as np
from PIL import Image

from tests import screenshots


def _png(array) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def test_small_changes_keep_the_file_and_a_changed_layout_rewrites_it(tmp_path, monkeypatch):
    monkeypatch.setattr(screenshots, "SCREENSHOTS", tmp_path)
    base = np.full((100, 100, 3), 255)
    screenshots.save_screenshot("a.png", _png(base))
    kept = (tmp_path / "a.png").read_bytes()
    clock = base.copy()
    clock[0:2, 0:100] = 0                       # 2 % of the pixels: a time, a generated name
    screenshots.save_screenshot("a.png", _png(clock))
    assert (tmp_path / "a.png").read_bytes() == kept
    moved = base.copy()
    moved[10:30, 0:100] = 0                     # 20 %: the layout changed
    screenshots.save_screenshot("a.png", _png(moved))
    assert (tmp_path / "a.png").read_bytes() == _png(moved)
    screenshots.save_screenshot("a.png", _png(np.full((50, 100, 3), 255)))   # another size
    assert Image.open(tmp_path / "a.png").size == (100, 50)
    one_pixel = np.full((50, 100, 3), 255)
    one_pixel[0, 0] = 0
    screenshots.save_screenshot("a.png", _png(one_pixel))
    assert np.asarray(Image.open(tmp_path / "a.png"))[0, 0, 0] == 255, "a one-pixel change is kept out"
    monkeypatch.setenv("CONVOT_SCREENSHOTS", "refresh")
    screenshots.save_screenshot("a.png", _png(one_pixel))
    assert np.asarray(Image.open(tmp_path / "a.png"))[0, 0, 0] == 0, "refresh rewrites it"
