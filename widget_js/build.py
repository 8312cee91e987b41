#!/usr/bin/env python3
"""Build the served widget files from widget_js/src (Python standard library only).

    python widget_js/build.py           write widget_js/dist/loader.js and widget.js
    python widget_js/build.py --check   exit 1 if the committed dist/ differs from a fresh build

widget.js is the sources concatenated inside one function scope (nothing leaks onto the host
page's globals) with the stylesheet inlined as a string. The loader references widget.js by a
content hash (`?v=`), so widget.js can be cached for a year and a new build is picked up as
soon as the short-lived loader is.

"Minification" is deliberately conservative: whole-line comments, indentation and blank
lines go; code is never rewritten. The sources avoid template literals and block comments so
these line-based rules are always safe, and the build refuses sources that break them.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
DIST = HERE / "dist"
SOURCES = ("util.js", "core.js", "ui.js", "widget.js", "protocol.js", "boot.js")


class BuildError(Exception):
    pass


def strip_js(text: str, name: str) -> str:
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        code = line.strip()
        if not code or code.startswith("//"):
            continue
        if "`" in code:
            raise BuildError(f"{name}:{number}: template literals are not allowed (line-based build)")
        if code.startswith("/*") or code.startswith("*"):
            raise BuildError(f"{name}:{number}: use // comments, not block comments")
        out.append(code)
    return "\n".join(out) + "\n"


def minify_css(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s*([{};,>])\s*", r"\1", text)
    return text.replace(";}", "}").strip()


def build() -> dict[str, str]:
    css = minify_css((SRC / "widget.css").read_text(encoding="utf-8"))
    parts = ["(function(window,document){\"use strict\";\n",
             "var CSS_TEXT=" + json.dumps(css, ensure_ascii=True) + ";\n"]
    for name in SOURCES:
        parts.append(strip_js((SRC / name).read_text(encoding="utf-8"), name))
    parts.append("})(window,document);\n")
    body = "".join(parts)
    version = hashlib.sha256(body.encode()).hexdigest()[:12]
    widget = f"/*! Convot widget {version} */\n" + body
    loader = strip_js((SRC / "loader.js").read_text(encoding="utf-8"), "loader.js")
    if "__WIDGET_VERSION__" not in loader:
        raise BuildError("loader.js: missing __WIDGET_VERSION__")
    loader = loader.replace("__WIDGET_VERSION__", version)
    return {"widget.js": widget, "loader.js": loader}


def main(argv: list[str]) -> int:
    try:
        files = build()
    except BuildError as exc:
        print(f"widget build: {exc}", file=sys.stderr)
        return 2
    if "--check" in argv:
        stale = [n for n, text in files.items()
                 if not (DIST / n).exists() or (DIST / n).read_text(encoding="utf-8") != text]
        if stale:
            print(f"widget build: dist/ is stale ({', '.join(stale)}); run python widget_js/build.py",
                  file=sys.stderr)
            return 1
        return 0
    DIST.mkdir(exist_ok=True)
    for name, text in files.items():
        (DIST / name).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
