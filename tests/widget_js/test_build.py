"""The served widget files (widget_js/build.py): committed build is current, within the size
budget, and the size stated in docs/widget.md is the real one."""

import gzip
import importlib.util
import re
import subprocess
import sys

import pytest

from tests.widget_js.support import ROOT

BUDGET = 30 * 1024
BUILD = ROOT / "widget_js" / "build.py"


def _build_module():
    spec = importlib.util.spec_from_file_location("widget_build", BUILD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _gzipped(text: str) -> int:
    return len(gzip.compress(text.encode(), compresslevel=9))


def test_committed_dist_is_the_current_build():
    result = subprocess.run([sys.executable, str(BUILD), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_loader_and_widget_fit_the_budget_and_the_docs_say_how_much():
    files = _build_module().build()
    total = _gzipped(files["loader.js"]) + _gzipped(files["widget.js"])
    assert total <= BUDGET, f"loader + widget = {total} bytes gzipped, budget {BUDGET}"
    assert _gzipped(files["loader.js"]) <= 1024      # the part on every page's critical path
    doc = (ROOT / "docs" / "widget.md").read_text()
    stated = re.search(r"Loader \+ widget: ([0-9.]+) KB gzipped", doc)
    assert stated, "docs/widget.md must state the gzipped size"
    assert abs(float(stated.group(1)) - total / 1024) < 0.5, f"docs say {stated.group(1)} KB, real {total / 1024:.1f} KB"


def test_widget_is_one_scope_versioned_by_content():
    files = _build_module().build()
    widget, loader = files["widget.js"], files["loader.js"]
    version = re.search(r"widget\.js\?v=([0-9a-f]{12})", loader).group(1)
    assert widget.startswith(f"/*! Convot widget {version} */\n(function(window,document){{\"use strict\";")
    assert widget.rstrip().endswith("})(window,document);")
    assert "__WIDGET_VERSION__" not in loader


def test_build_refuses_sources_its_line_rules_cannot_handle():
    build = _build_module()
    with pytest.raises(build.BuildError, match="template literals"):
        build.strip_js("var a = `x ${y}`;\n", "x.js")
    with pytest.raises(build.BuildError, match="block comments"):
        build.strip_js("/* a\n * b */\nvar a;\n", "x.js")
    assert build.strip_js("  // note\n  var a = 1; // kept\n\n", "x.js") == "var a = 1; // kept\n"
    assert build.minify_css("/* c */ .a > .b { color : red ; }\n") == ".a>.b{color : red}"
