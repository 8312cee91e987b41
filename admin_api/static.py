"""Files the admin API serves to browsers: the inbox, the widget and (in development) the demo shop.

* ``GET /app/`` and every app route below it (``/app/c/<id>``, ``/app/settings/team``, ...)
  answer the inbox's ``index.html`` (history routing); its assets live under
  ``/app/static/<version>/...`` where ``<version>`` is a hash of the whole inbox folder, so they
  are cached for a year (``immutable``) and a new release is picked up with the next page load.
* ``GET /widget/<file>``: the built widget (``widget_js/dist``), cross-origin resources of the
  shops: ``loader.js`` cached 5 minutes, ``widget.js?v=<its version>`` for a year.
* ``GET /demo``: the demo shop page (``widget_js/demo.html``) filled in with the demo app of
  ``<data.dir>/demo.json`` (written by ``convot demo`` / ``convot up``); development only.

Files are read once, off the event loop, into memory with their gzip form and a strong ETag
(in development they are re-read when they change, so edits show on reload).  A request names
a file only through a lookup in that in-memory table, so no request path ever reaches the file
system.  Pages carry their own Content-Security-Policy: no inline script or style in the
inbox; the demo page's inline blocks are allowed by their hashes.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import html
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from admin_api import keys
from admin_api.call import Call
from admin_api.errors import ApiError
from admin_api.routing import RouteTable
from admin_api.schemas import Schema, String
from admin_api.security import origin_of

log = logging.getLogger("convot.admin_api.static")

routes = RouteTable(tag="static")

INBOX_DIR = Path(__file__).resolve().parent / "inbox"
WIDGET_DIR = Path(__file__).resolve().parent.parent / "widget_js"
WIDGET_DIST = WIDGET_DIR / "dist"
DEMO_TEMPLATE = WIDGET_DIR / "demo.html"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}
COMPRESSIBLE = (".html", ".js", ".mjs", ".css", ".json", ".webmanifest", ".svg", ".txt")
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_FILES = 500

IMMUTABLE = "public, max-age=31536000, immutable"
LOADER_CACHE = "public, max-age=300"
REVALIDATE = "no-cache"
ASSET_PREFIX = "static/"

# An app route of the inbox (answered with index.html): path segments without a file extension.
_APP_ROUTE = re.compile(r"^(?:[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*/?)?$")
_APP_ID = re.compile(r"^app_[A-Za-z0-9_-]{1,64}$")
_WIDGET_VERSION = re.compile(rb"^/\*! Convot widget ([0-9a-f]{6,64}) \*/")
_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.S | re.I)
_INLINE_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.S | re.I)
_STYLE_ATTR = re.compile(r"""\sstyle="([^"]*)\"""", re.I)


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    content_type: str
    etag: str

    @classmethod
    def of(cls, name: str, body: bytes) -> "Asset":
        suffix = Path(name).suffix.lower()
        packed = gzip.compress(body, 9, mtime=0) if suffix in COMPRESSIBLE and len(body) > 256 else None
        if packed is not None and len(packed) >= len(body):
            packed = None
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        return cls(body, packed, CONTENT_TYPES[suffix], etag)


def _read_tree(root: Path) -> dict[str, Asset]:
    """Every servable file below ``root`` by its relative POSIX path (blocking: run in a thread)."""
    files: dict[str, Asset] = {}
    if not root.is_dir():
        return files
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if not path.is_file() or path.suffix.lower() not in CONTENT_TYPES:
            continue
        if any(part.startswith(".") for part in rel.split("/")):
            continue  # editor swap files, .DS_Store, ...
        if path.stat().st_size > MAX_FILE_BYTES or len(files) >= MAX_FILES:
            raise RuntimeError(f"static files: {rel} is too large or {root} holds too many files")
        files[rel] = Asset.of(rel, path.read_bytes())
    return files


def _signature(roots: tuple[Path, ...]) -> tuple:
    """What changes when a file is edited, added or removed (blocking: run in a thread)."""
    out = []
    for root in roots:
        if root.is_dir():
            for path in root.rglob("*"):
                if path.is_file():
                    st = path.stat()
                    out.append((str(path), st.st_mtime_ns, st.st_size))
        elif root.is_file():
            st = root.stat()
            out.append((str(root), st.st_mtime_ns, st.st_size))
    return tuple(sorted(out))


@dataclass(frozen=True)
class Bundle:
    """One consistent snapshot of everything served."""

    inbox: dict[str, Asset]
    inbox_version: str
    index: Asset | None            # index.html with its placeholders filled
    widget: dict[str, Asset]
    widget_version: str | None
    demo_template: str | None


def inbox_version(files: dict[str, Asset]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].etag.encode() + b"\0")
    return digest.hexdigest()[:16]


def render_index(template: bytes, *, version: str, gateway_url: str) -> bytes:
    """index.html -> the served page: asset base and gateway URL filled in (HTML-escaped)."""
    text = template.decode("utf-8")
    text = text.replace("{{asset_base}}", html.escape(f"/app/{ASSET_PREFIX}{version}/", quote=True))
    text = text.replace("{{gateway_url}}", html.escape(gateway_url, quote=True))
    return text.encode("utf-8")


def inbox_csp(gateway_url: str) -> str:
    """The inbox's policy: only its own scripts and styles, sockets to itself and the gateway."""
    gateway = origin_of(gateway_url)
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
            f"connect-src 'self' {gateway}; manifest-src 'self'; media-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def _load(config) -> Bundle:
    inbox = _read_tree(INBOX_DIR)
    version = inbox_version(inbox)
    index = inbox.pop("index.html", None)
    page = None
    if index is not None:
        page = Asset.of("index.html", render_index(index.body, version=version,
                                                   gateway_url=config.admin_api.gateway_public_url))
    widget = _read_tree(WIDGET_DIST)
    widget_version = None
    if "widget.js" in widget:
        match = _WIDGET_VERSION.match(widget["widget.js"].body)
        widget_version = match.group(1).decode() if match else None
    demo = DEMO_TEMPLATE.read_text(encoding="utf-8") if DEMO_TEMPLATE.is_file() else None
    return Bundle(inbox, version, page, widget, widget_version, demo)


class StaticFiles:
    """The served files; reloaded from disk when they change if ``watch`` (development)."""

    ROOTS = (INBOX_DIR, WIDGET_DIST, DEMO_TEMPLATE)

    def __init__(self, config, *, watch: bool) -> None:
        self.config = config
        self.watch = watch
        self._bundle: Bundle | None = None
        self._signature: tuple | None = None
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        self._signature = await asyncio.to_thread(_signature, self.ROOTS) if self.watch else None
        self._bundle = await asyncio.to_thread(_load, self.config)

    async def bundle(self) -> Bundle:
        if self.watch:
            async with self._lock:
                current = await asyncio.to_thread(_signature, self.ROOTS)
                if current != self._signature:
                    log.info("static files changed: reloading")
                    await self.load()
        assert self._bundle is not None
        return self._bundle


STATIC = web.AppKey("static_files", StaticFiles)


async def static_files(app: web.Application):
    """cleanup_ctx: read the files before the first request."""
    config = app[keys.CONFIG]
    files = StaticFiles(config, watch=config.admin_api.development)
    await files.load()
    app[STATIC] = files
    yield


# --- responses --------------------------------------------------------------------------------

def _accepts_gzip(request: web.Request) -> bool:
    for part in request.headers.get("Accept-Encoding", "").split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def _etag_matches(request: web.Request, etag: str) -> bool:
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    if header.strip() == "*":
        return True
    candidates = {t.strip().removeprefix("W/") for t in header.split(",")}
    return etag in candidates or etag[:-1] + '-gzip"' in candidates


def serve_asset(request: web.Request, asset: Asset, *, cache: str, extra: dict[str, str] | None = None) -> web.Response:
    """The file, gzipped when the client takes it, 304 when its ETag is current."""
    headers = {"Cache-Control": cache, "Vary": "Accept-Encoding", **(extra or {})}
    gz = asset.gzipped is not None and _accepts_gzip(request)
    etag = asset.etag[:-1] + '-gzip"' if gz else asset.etag
    headers["ETag"] = etag
    if _etag_matches(request, asset.etag):
        return web.Response(status=304, headers=headers)
    if gz:
        headers["Content-Encoding"] = "gzip"
    response = web.Response(body=asset.gzipped if gz else asset.body, headers=headers)
    response.headers["Content-Type"] = asset.content_type
    return response


def _not_found() -> ApiError:
    return ApiError("not_found")


# --- the inbox ----------------------------------------------------------------------------------

@routes.route("GET", "/app", permission="public", content_type="text/html", summary="The inbox (redirect to /app/)")
async def inbox_root(call: Call) -> web.Response:
    return web.Response(status=308, headers={"Location": "/app/"})


@routes.route("GET", "/app/{path:.*}", permission="public", content_type="text/html",
              params={"path": String(max_length=300, pattern=r"[A-Za-z0-9._/-]*", strip=False)},
              summary="The inbox: its page for every app route, its versioned assets under /app/static/")
async def inbox(call: Call) -> web.Response:
    bundle = await call.app[STATIC].bundle()
    path = call.path["path"]
    if path.startswith(ASSET_PREFIX):
        version, _, name = path[len(ASSET_PREFIX):].partition("/")
        asset = bundle.inbox.get(name)
        if asset is None:
            raise _not_found()
        # An asset asked for under another version (a page of the previous release) is served,
        # but never cached as that version's.
        return serve_asset(call.request, asset, cache=IMMUTABLE if version == bundle.inbox_version else REVALIDATE)
    if bundle.index is None or not _APP_ROUTE.match(path) or ".." in path:
        raise _not_found()
    return serve_asset(call.request, bundle.index, cache=REVALIDATE,
                       extra={"Content-Security-Policy": inbox_csp(call.config.admin_api.gateway_public_url)})


# --- the widget ---------------------------------------------------------------------------------

class WidgetQuery(Schema):
    v = String(required=False, max_length=64, pattern=r"[0-9a-f]{6,64}", description="the build's version")


WIDGET_HEADERS = {"Cross-Origin-Resource-Policy": "cross-origin"}


@routes.route("GET", "/widget/{name}", permission="public", content_type="text/javascript", query=WidgetQuery,
              params={"name": String(max_length=100, pattern=r"[A-Za-z0-9_-]+\.[a-z0-9]+")},
              summary="The widget's files (loader.js, widget.js?v=<version>)",
              description="Cross-origin resources of the shops that embed the widget; widget.js is cached "
                          "for a year when asked for with its current version, loader.js for 5 minutes.")
async def widget_file(call: Call) -> web.Response:
    bundle = await call.app[STATIC].bundle()
    name = call.path["name"]
    asset = bundle.widget.get(name)
    if asset is None:
        raise _not_found()
    version = call.query.v if call.query.is_set("v") else None
    immutable = name != "loader.js" and version is not None and version == bundle.widget_version
    return serve_asset(call.request, asset, cache=IMMUTABLE if immutable else LOADER_CACHE, extra=WIDGET_HEADERS)


# --- the demo shop (development) -------------------------------------------------------------------

def _sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def fill_demo(template: str, *, app_id: str, api_url: str) -> str:
    if not _APP_ID.match(app_id):
        raise ValueError("demo app id is malformed")
    return template.replace("{{app_id}}", app_id).replace("{{api_url}}", html.escape(api_url.rstrip("/"), quote=True))


def demo_csp(page: str, *, api_url: str, gateway_url: str) -> str:
    """A strict policy for the demo page: its own inline blocks by hash, the widget from the API.

    It also shows that the widget runs under a shop's strict CSP (docs/widget.md)."""
    scripts = " ".join(sorted({_sha256_source(s) for s in _INLINE_SCRIPT.findall(page)}))
    styles = sorted({_sha256_source(s) for s in _INLINE_STYLE.findall(page)})
    attrs = sorted({_sha256_source(s) for s in _STYLE_ATTR.findall(page)})
    style_src = " ".join(styles + (["'unsafe-hashes'"] + attrs if attrs else []))
    api, gateway = origin_of(api_url), origin_of(gateway_url)
    return (f"default-src 'none'; script-src 'self' {api} {scripts}; style-src 'self' {style_src}; "
            f"img-src 'self' {api} https: data:; connect-src 'self' {api} {gateway}; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def _read_demo(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@routes.route("GET", "/demo", permission="public", content_type="text/html",
              summary="The demo shop with the widget of the demo app (development only)")
async def demo_page(call: Call) -> web.Response:
    config = call.config
    if not config.admin_api.development:
        raise _not_found()
    bundle = await call.app[STATIC].bundle()
    demo = await asyncio.to_thread(_read_demo, config.data_dir / "demo.json")
    app_id = demo.get("app_id") if isinstance(demo, dict) else None
    if bundle.demo_template is None or not isinstance(app_id, str) or not _APP_ID.match(app_id):
        raise ApiError("not_found", "No demo app yet: run `convot demo` (or `convot up`).")
    api_url = config.admin_api.public_url
    page = fill_demo(bundle.demo_template, app_id=app_id, api_url=api_url)
    headers = {"Cache-Control": "no-store",
               "Content-Security-Policy": demo_csp(page, api_url=api_url,
                                                   gateway_url=config.admin_api.gateway_public_url)}
    return web.Response(text=page, content_type="text/html", charset="utf-8", headers=headers)
