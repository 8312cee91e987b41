"""Exports of the organisation's data (owners): start one, follow it, download the archive.

The archive is built by the engine workers (engine/export.py).  It is downloaded through an
expiring signed link: ``POST .../exports/{id}/link`` answers a URL carrying the organisation,
the expiry and an HMAC-SHA256 signature, keyed by a key derived from the primary encryption
key (``kid`` names it, so links survive a key rotation until they expire).  The link itself is
the credential (it can be handed to ``curl``); it lives ``data_rights.export_link_ttl``
seconds.  Requesting, linking and downloading are audited.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web

from admin_api import keys
from admin_api.call import Call
from admin_api.errors import ApiError
from admin_api.routing import RouteTable
from admin_api.schemas import Array, DateTime, Integer, Nested, Object, Schema, String, Uuid
from convot.crypto import parse_keys
from convot.db import scoped
from engine.erasure import export_dir

routes = RouteTable(tag="exports")

_LABEL = b"convot export download link v1"


class LinkSigner:
    """HMAC-SHA256 download links; keys derived from ``auth.encryption_keys`` (first one signs)."""

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        self._keys = {kid: hmac.new(key, _LABEL, hashlib.sha256).digest() for kid, key in keys}
        self.kid = keys[0][0]

    @classmethod
    def from_config(cls, config) -> "LinkSigner":
        spec = config.auth.encryption_keys
        if not spec:
            from convot.embedded import DevSecrets

            dev = DevSecrets.load_or_create(config.data_dir)
            spec = f"{dev.encryption_key_id}={dev.encryption_key}"
        return cls(parse_keys(spec))

    @staticmethod
    def _message(org_id, export_id, expires: int) -> bytes:
        return f"{org_id}|{export_id}|{expires}".encode()

    def sign(self, org_id, export_id, expires: int) -> tuple[str, str]:
        mac = hmac.new(self._keys[self.kid], self._message(org_id, export_id, expires), hashlib.sha256).hexdigest()
        return self.kid, mac

    def verify(self, org_id, export_id, expires: int, kid: str, signature: str, now: float) -> bool:
        key = self._keys.get(kid)
        if key is None or expires < now:
            return False
        expected = hmac.new(key, self._message(org_id, export_id, expires), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected.encode(), signature.encode())  # bytes: any input is comparable


class Export(Schema):
    id = Uuid()
    status = String(description="pending, running, done or failed")
    requested_by = Uuid(nullable=True)
    created_at = DateTime()
    finished_at = DateTime(nullable=True)
    expires_at = DateTime(nullable=True, description="the archive is deleted after this")
    size_bytes = Integer(nullable=True)
    sha256 = String(nullable=True, description="of the archive file")
    counts = Object(description="rows per entity")
    available = Integer(description="1 when the archive can be downloaded")


class ExportList(Schema):
    items = Array(Nested(Export), max_items=100)


class ExportLink(Schema):
    url = String(description="GET it (no credentials needed) before expires_at")
    expires_at = Integer(description="Unix seconds")


class DownloadQuery(Schema):
    """The signed link's parameters; anything wrong or missing answers 404, like a wrong signature."""

    org_id = String(max_length=64, required=False)
    expires = String(max_length=20, required=False)
    kid = String(max_length=64, required=False)
    signature = String(max_length=128, required=False)


def _link_parts(q: DownloadQuery) -> tuple[uuid.UUID, int, str, str] | None:
    if not all(q.is_set(n) for n in DownloadQuery.__fields__):
        return None
    try:
        org_id = uuid.UUID(q.org_id)
    except ValueError:
        return None
    if not q.expires.isdigit():
        return None
    return org_id, int(q.expires), q.kid, q.signature


_COLUMNS = """SELECT id, status, requested_by, created_at, finished_at, expires_at, size_bytes, sha256, counts,
                     (file_path IS NOT NULL AND status = 'done' AND expires_at > now())::int AS available
              FROM exports"""


def _view(row) -> Export:
    return Export(**dict(row))


@routes.route("POST", "/v1/orgs/{org_id}/exports", permission="data.export", response=Export, status=202,
              errors=("conflict",), summary="Start an export of everything the organisation owns",
              description="Built in the background; follow it with GET .../exports/{id}.")
async def start_export(call: Call) -> Export:
    async with call.db() as conn:
        await conn.execute("SELECT 1 FROM organisations WHERE id = $1 FOR UPDATE", call.org_id)
        busy = await conn.fetchval("SELECT true FROM exports WHERE org_id = $1 AND status IN ('pending', 'running') "
                                   "LIMIT 1", call.org_id)
        if busy:
            raise ApiError("conflict", "An export is already being prepared.")
        export_id = await conn.fetchval("INSERT INTO exports (org_id, requested_by) VALUES ($1, $2) RETURNING id",
                                        call.org_id, call.user_id)
        await call.audit(conn, "export.requested", "export", export_id)
        return _view(await conn.fetchrow(_COLUMNS + " WHERE org_id = $1 AND id = $2", call.org_id, export_id))


@routes.route("GET", "/v1/orgs/{org_id}/exports", permission="data.export", response=ExportList,
              summary="Exports of the organisation, newest first")
async def list_exports(call: Call) -> ExportList:
    async with call.db() as conn:
        rows = await conn.fetch(_COLUMNS + " WHERE org_id = $1 ORDER BY created_at DESC LIMIT 100", call.org_id)
    return ExportList(items=[_view(r) for r in rows])


@routes.route("GET", "/v1/orgs/{org_id}/exports/{export_id}", permission="data.export", response=Export,
              summary="One export")
async def get_export(call: Call) -> Export:
    async with call.db() as conn:
        row = await conn.fetchrow(_COLUMNS + " WHERE org_id = $1 AND id = $2", call.org_id, call.path["export_id"])
    if row is None:
        raise ApiError("not_found")
    return _view(row)


@routes.route("POST", "/v1/orgs/{org_id}/exports/{export_id}/link", permission="data.export", response=ExportLink,
              errors=("conflict",), summary="An expiring signed download link for a finished export")
async def export_link(call: Call) -> ExportLink:
    export_id = call.path["export_id"]
    async with call.db() as conn:
        row = await conn.fetchrow(_COLUMNS + " WHERE org_id = $1 AND id = $2", call.org_id, export_id)
        if row is None:
            raise ApiError("not_found")
        if not row["available"]:
            raise ApiError("conflict", "The archive is not ready, or it has expired.")
        expires = int(time.time()) + call.config.data_rights.export_link_ttl
        if row["expires_at"] is not None:
            expires = min(expires, int(row["expires_at"].timestamp()))
        kid, signature = LinkSigner.from_config(call.config).sign(call.org_id, export_id, expires)
        await call.audit(conn, "export.link_created", "export", export_id, {"expires": expires})
    query = urlencode({"org_id": str(call.org_id), "expires": expires, "kid": kid, "signature": signature})
    return ExportLink(url=f"{call.config.admin_api.public_url.rstrip('/')}/v1/export-archives/{export_id}?{query}",
                      expires_at=expires)


@routes.route("GET", "/v1/export-archives/{export_id}", permission="public", query=DownloadQuery, response=None,
              content_type="application/zip", summary="Download an export archive through its signed link",
              description="Answers 404 for a wrong, expired or foreign link.")
async def download_export(call: Call) -> web.StreamResponse:
    export_id = call.path["export_id"]
    parts = _link_parts(call.query)
    if parts is None or not LinkSigner.from_config(call.config).verify(parts[0], export_id, *parts[1:],
                                                                       now=time.time()):
        raise ApiError("not_found")
    org_id = parts[0]
    async with scoped(call.app[keys.DB], org_id=org_id) as conn:
        row = await conn.fetchrow("SELECT file_path FROM exports WHERE org_id = $1 AND id = $2 AND status = 'done' "
                                  "AND expires_at > now()", org_id, export_id)
        if row is None or row["file_path"] is None:
            raise ApiError("not_found")
        path = Path(row["file_path"]).resolve()
        if export_dir(call.config) not in path.parents or not path.is_file():
            raise ApiError("not_found")
        await call.audit(conn, "export.downloaded", "export", export_id, org_id=org_id)
    response = web.FileResponse(path, headers={
        "Content-Type": "application/zip",
        "Content-Disposition": f'attachment; filename="convot-export-{export_id}.zip"'})
    return response
