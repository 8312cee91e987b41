"""The files the admin API serves to browsers: the inbox (admin_api/inbox), the widget
(widget_js/dist) and the demo shop page; content types, caching, compression, ETags, CSP, and
that no request path reaches the file system."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
from html.parser import HTMLParser

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from admin_api import static
from admin_api.app import create_app

INBOX = static.INBOX_DIR


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []
        self.inline_scripts = 0
        self.inline_styles = 0
        self.style_attrs = 0
        self.handlers = 0
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for name in ("src", "href"):
            if a.get(name) and tag in ("script", "link"):
                self.refs.append(a[name])
        if tag == "script" and "src" not in a:
            self.inline_scripts += 1
        if tag == "style":
            self.inline_styles += 1
        if "style" in a:
            self.style_attrs += 1
        self.handlers += sum(1 for k in a if k.startswith("on"))


async def get(client, path, **headers):
    answer = await client.call("GET", path, headers=headers)
    answer.headers = CIMultiDict(answer.headers)   # header names as case-insensitive as HTTP's
    return answer


async def raw(api_server, path, headers=None):
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        async with http.get(api_server.make_url(path), headers=headers or {}) as resp:
            return resp.status, CIMultiDict(resp.headers), await resp.read()


# --- the inbox ---------------------------------------------------------------------------------

async def test_inbox_page_is_served_with_a_strict_policy_and_revalidation(client, api_config):
    answer = await get(client, "/app/")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    assert answer.headers["Cache-Control"] == "no-cache"
    assert answer.headers["ETag"].startswith('"')
    csp = answer.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["default-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in csp
    gateway = api_config.admin_api.gateway_public_url.rstrip("/")
    assert directives["connect-src"] == f"'self' {gateway}"
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert f'content="{api_config.admin_api.gateway_public_url}"' in answer.body
    assert "{{" not in answer.body


async def test_every_app_route_answers_the_same_page(client):
    first = await get(client, "/app/")
    for path in ("/app/login", "/app/c/0b7a2a8e-8f25-4c57-9a55-6f9c2e0c8d11", "/app/settings/team",
                 "/app/settings/apps/0b7a2a8e-8f25-4c57-9a55-6f9c2e0c8d11", "/app/inbox/mine"):
        answer = await get(client, path)
        assert answer.status == 200, path
        assert answer.body == first.body
    redirect = await client.http.get("/app", allow_redirects=False)
    assert redirect.status == 308 and redirect.headers["Location"] == "/app/"


async def test_the_page_has_no_inline_script_or_style_and_every_reference_resolves(client):
    page = await get(client, "/app/")
    refs = _Refs()
    refs.feed(page.body)
    assert refs.inline_scripts == 0 and refs.inline_styles == 0 and refs.style_attrs == 0 and refs.handlers == 0
    assert refs.refs, "the page references its assets"
    version = re.search(r'/app/static/([0-9a-f]{16})/', page.body).group(1)
    types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
    for ref in refs.refs:
        assert ref.startswith(f"/app/static/{version}/"), ref
        answer = await get(client, ref)
        assert answer.status == 200, ref
        assert answer.headers["Content-Type"] == types[ref[ref.rindex("."):]], ref
        assert answer.headers["Cache-Control"] == static.IMMUTABLE


async def test_every_module_of_the_inbox_is_preloaded_and_no_source_builds_html_from_strings(client):
    page = (await get(client, "/app/")).body
    modules = sorted(p.relative_to(INBOX).as_posix() for p in (INBOX / "js").rglob("*.js"))
    for module in modules:
        if module != "js/main.js":
            assert f'js/{module[3:]}"' in page, f"{module} is not preloaded"
    for path in (INBOX / "js").rglob("*.js"):
        code = "\n".join(line for line in path.read_text().splitlines() if not line.strip().startswith("//"))
        found = re.findall(r"\.(?:inner|outer)HTML\b|insertAdjacentHTML|document\.write|\beval\(|new Function\b|DOMParser|createContextualFragment", code)
        assert not found, f"{path.name} builds HTML from strings: {found}"


async def test_assets_are_gzipped_for_clients_that_accept_it_and_answer_304_to_their_etag(api_server, client):
    page = (await get(client, "/app/")).body
    ref = re.search(r'src="(/app/static/[^"]+/js/main\.js)"', page).group(1)
    plain_status, plain_headers, plain = await raw(api_server, ref, {"Accept-Encoding": "identity"})
    assert plain_status == 200 and "Content-Encoding" not in plain_headers
    assert plain == (INBOX / "js" / "main.js").read_bytes()
    status, headers, packed = await raw(api_server, ref, {"Accept-Encoding": "gzip, br"})
    assert status == 200 and headers["Content-Encoding"] == "gzip" and headers["Vary"] == "Accept-Encoding"
    assert gzip.decompress(packed) == plain and len(packed) < len(plain)
    for etag in (plain_headers["ETag"], headers["ETag"]):
        status, again, body = await raw(api_server, ref, {"If-None-Match": etag, "Accept-Encoding": "gzip"})
        assert status == 304 and body == b"" and again["Cache-Control"] == static.IMMUTABLE
    status, _, _ = await raw(api_server, ref, {"If-None-Match": '"something-else"'})
    assert status == 200
    status, refused, _ = await raw(api_server, ref, {"Accept-Encoding": "gzip;q=0"})
    assert status == 200 and "Content-Encoding" not in refused


async def test_an_asset_of_another_release_is_served_but_not_cached_as_that_release(client):
    answer = await get(client, "/app/static/0000000000000000/inbox.css")
    assert answer.status == 200 and answer.headers["Cache-Control"] == "no-cache"
    assert answer.body == (INBOX / "inbox.css").read_text()


@pytest.mark.parametrize("path", [
    "/app/static/x/../../static.py", "/app/static/x/%2e%2e/%2e%2e/static.py", "/app/static/x/..%2F..%2Fapp.py",
    "/app/static/x/js/../../../app.py", "/app/static/x/index.html", "/app/static/x/nothing.js", "/app/static/x/",
    "/app/app.py", "/app/.env", "/app/js/main.js", "/app/settings/team/extra.js", "/app/%00", "/app/a%20b",
])
async def test_paths_outside_the_served_files_answer_404(client, path):
    answer = await get(client, path)
    assert answer.status == 404, (path, answer.status)
    assert answer.code == "not_found"
    assert "import" not in str(answer.body)


def test_the_version_changes_with_any_file_and_render_escapes_the_gateway_url():
    a = {"x.js": static.Asset.of("x.js", b"1"), "y.css": static.Asset.of("y.css", b"2")}
    b = {"x.js": static.Asset.of("x.js", b"1"), "y.css": static.Asset.of("y.css", b"3")}
    c = {"x.js": static.Asset.of("x.js", b"1")}
    assert len({static.inbox_version(a), static.inbox_version(b), static.inbox_version(c)}) == 3
    page = static.render_index(b'<meta content="{{gateway_url}}"><script src="{{asset_base}}m.js">',
                               version="abc", gateway_url='ws://h/"><script>alert(1)</script>')
    assert page == (b'<meta content="ws://h/&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;">'
                    b'<script src="/app/static/abc/m.js">')


# --- the widget ---------------------------------------------------------------------------------

WIDGET_DIST = static.WIDGET_DIST


async def test_widget_loader_is_a_short_lived_cross_origin_script(client):
    answer = await get(client, "/widget/loader.js")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert answer.headers["Cache-Control"] == "public, max-age=300"
    assert answer.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert "Access-Control-Allow-Origin" not in answer.headers
    assert answer.body == (WIDGET_DIST / "loader.js").read_text()


async def test_widget_script_is_immutable_only_under_its_own_version(client):
    loader = (WIDGET_DIST / "loader.js").read_text()
    version = re.search(r"widget\.js\?v=([0-9a-f]+)", loader).group(1)
    answer = await get(client, f"/widget/widget.js?v={version}")
    assert answer.status == 200
    assert answer.headers["Cache-Control"] == static.IMMUTABLE
    assert answer.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert answer.body == (WIDGET_DIST / "widget.js").read_text()
    stale = await get(client, "/widget/widget.js?v=000000000000")
    assert stale.status == 200 and stale.headers["Cache-Control"] == "public, max-age=300"
    unversioned = await get(client, "/widget/widget.js")
    assert unversioned.headers["Cache-Control"] == "public, max-age=300"


@pytest.mark.parametrize("path", ["/widget/nothing.js", "/widget/..%2Fbuild.py", "/widget/build.py", "/widget/demo.html",
                                  "/widget/loader.js?v=<script>", "/widget/loader.js?x=1"])
async def test_widget_refuses_unknown_files_and_parameters(client, path):
    answer = await get(client, path)
    assert answer.status in (404, 422), path
    assert answer.code in ("not_found", "unprocessable_entity")


# --- the demo shop ------------------------------------------------------------------------------

@pytest.fixture
async def demo_server(servers, tmp_path):
    async def start(*, development=True, demo=None):
        cfg = servers.config(data={"dir": str(tmp_path)},
                             admin_api={"development": development, "public_url": "http://shop.localhost:8080",
                                        "gateway_public_url": "ws://gw.localhost:8765"})
        if demo is not None:
            (tmp_path / "demo.json").write_text(json.dumps(demo))
        server = TestServer(create_app(cfg))
        await server.start_server()
        started.append(server)
        return server

    started: list[TestServer] = []
    yield start
    for server in started:
        await server.close()


def _csp_allows(csp: str, directive: str, source: str) -> bool:
    digest = "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"
    for part in csp.split(";"):
        name, _, values = part.strip().partition(" ")
        if name == directive:
            return digest in values.split()
    return False


async def test_demo_page_embeds_the_demo_app_under_a_strict_policy(demo_server):
    server = await demo_server(demo={"app_id": "app_Demo123_x-y", "owner": "o@example.com"})
    status, headers, body = await raw(server, "/demo")
    page = body.decode()
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert 'app_id: "app_Demo123_x-y"' in page
    assert '<script async src="http://shop.localhost:8080/widget/loader.js"></script>' in page
    assert "{{" not in page
    csp = headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    styles = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert scripts and styles
    assert all(_csp_allows(csp, "script-src", s) for s in scripts)
    assert all(_csp_allows(csp, "style-src", s) for s in styles)
    assert "connect-src 'self' http://shop.localhost:8080 ws://gw.localhost:8765" in csp
    assert "frame-ancestors 'none'" in csp


async def test_demo_page_exists_only_in_development_and_with_a_well_formed_demo_app(demo_server):
    production = await demo_server(development=False, demo={"app_id": "app_ok"})
    status, _, _ = await raw(production, "/demo")
    assert status == 404


async def test_demo_page_without_a_demo_app_answers_404(demo_server):
    server = await demo_server()
    status, _, body = await raw(server, "/demo")
    assert status == 404 and b"convot demo" in body


async def test_a_tampered_demo_file_is_never_put_into_the_page(demo_server):
    server = await demo_server(demo={"app_id": 'app_x";alert(1);//'})
    status, _, body = await raw(server, "/demo")
    assert status == 404 and b"alert" not in body


def test_fill_demo_escapes_the_url_and_refuses_a_malformed_app_id():
    page = static.fill_demo('<b>{{app_id}}</b><script src="{{api_url}}/w.js">', app_id="app_abc",
                            api_url='http://x/"><img src=x onerror=alert(1)>/')
    assert page == '<b>app_abc</b><script src="http://x/&quot;&gt;&lt;img src=x onerror=alert(1)&gt;/w.js">'
    with pytest.raises(ValueError):
        static.fill_demo("{{app_id}}", app_id="app_<x>", api_url="http://x")
