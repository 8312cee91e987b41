"""promtool (Debian's `prometheus` package; `./dev test` installs it): the checks of configs/
and of our /metrics output run the real tool. Missing, it fails the test with what to do."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def promtool_path() -> str:
    path = os.environ.get("CONVOT_TEST_PROMTOOL") or shutil.which("promtool")
    if not path:
        pytest.fail("promtool not found: install Debian's 'prometheus' package (./dev test does it as root) "
                    "or set CONVOT_TEST_PROMTOOL to the binary")
    return path


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([promtool_path(), *args], input=stdin, capture_output=True, text=True, timeout=60)
