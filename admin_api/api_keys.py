"""REST API keys: ``ck_<id>:<secret>``, sent as ``Authorization: Bearer ck_<id>:<secret>``.

The whole key is shown once, at creation.  Only the SHA-256 of the secret is stored: the
secret is 256 random bits, so a fast hash is enough (nothing to brute-force) and checking a
request costs one indexed lookup.  Keys are scoped (``conversations:read`` ...), revocable,
record when they were last used (at most one write a minute per key) and are rate-limited per
key (``rest_api.rate_limit`` requests per ``rest_api.rate_window`` seconds, then 429 with
``Retry-After``).  ``api_key_resolver`` is the bearer resolver of the authentication chain.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from aiohttp import web

from admin_api import keys
from admin_api.call import Call
from admin_api.errors import ApiError
from admin_api.principal import Principal
from admin_api.routing import RouteTable
from admin_api.schemas import Array, Choice, DateTime, Nested, Schema, String
from admin_api.throttle import Limit, rate_limited
from convot.db import scoped, set_scope

routes = RouteTable(tag="api_keys")

SCOPES = ("conversations:read", "conversations:write", "messages:read", "messages:write",
          "contacts:read", "contacts:write", "webhooks:read", "webhooks:write")
KEY_ID = re.compile(r"^[0-9a-f]{16}$")
_KEY = re.compile(r"^ck_([0-9a-f]{16}):([A-Za-z0-9_-]{43})$")
LAST_USED_PRECISION = 60      # seconds: last_used_at is written at most once a minute per key
# Failed API-key authentications per client IP (a flood of wrong keys is cut before the database).
BAD_KEY_IP = Limit("api_key_bad_ip", 60, 60)


def new_key() -> tuple[str, str, str]:
    """(key id, secret, whole key as shown once)."""
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    return key_id, secret, f"ck_{key_id}:{secret}"


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_bearer(header: str | None) -> tuple[str, str] | None | bool:
    """``Authorization`` -> (key id, secret); None when it is not an API key (another resolver's
    business); False when it looks like one but is malformed."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    value = value.strip()
    if not value.startswith("ck_"):
        return None
    match = _KEY.match(value)
    if match is None:
        return False
    return match.group(1), match.group(2)


async def api_key_resolver(request: web.Request) -> Principal | None:
    parsed = parse_bearer(request.headers.get("Authorization"))
    if parsed is None:
        return None
    app = request.app
    ip = request[keys.CALL].ip if keys.CALL in request else (request.remote or "")
    throttle = app[keys.THROTTLE]
    await throttle.check((BAD_KEY_IP, ip))
    if parsed is False:
        await throttle.add((BAD_KEY_IP, ip))
        raise ApiError("unauthorized", "Malformed API key.")
    key_id, secret = parsed
    async with scoped(app[keys.DB], api_key_id=key_id) as conn:
        row = await conn.fetchrow(
            "SELECT org_id, secret_hash, scopes, revoked_at, "
            "(last_used_at IS NULL OR last_used_at < now() - make_interval(secs => $2)) AS stale "
            "FROM api_keys WHERE id = $1", key_id, LAST_USED_PRECISION)
        # the hash is compared even for an unknown id, so both answers take the same time
        stored = row["secret_hash"] if row is not None else "0" * 64
        matches = hmac.compare_digest(secret_hash(secret), stored)
        if row is None or not matches or row["revoked_at"] is not None:
            failed = True
        else:
            failed = False
            if row["stale"]:
                await set_scope(conn, org_id=row["org_id"])
                await conn.execute("UPDATE api_keys SET last_used_at = now() WHERE id = $1 AND org_id = $2",
                                   key_id, row["org_id"])
    if failed:
        await throttle.add((BAD_KEY_IP, ip))
        raise ApiError("unauthorized", "Unknown or revoked API key.")
    r = app[keys.CONFIG].rest_api
    limit = Limit("api_key", r.rate_limit, r.rate_window)
    wait = await throttle.hit((limit, key_id))
    if wait:
        raise rate_limited(wait, limit)     # convot_rate_limited_total{limit="api_key"}
    return Principal(kind="api_key", via="bearer", org_id=row["org_id"], api_key_id=key_id,
                     scopes=frozenset(row["scopes"]))


# ---- management (members: api_keys.manage) -----------------------------------------------------

class ApiKey(Schema):
    """An API key without its secret."""

    id = String(example="3f9a0c1b2d4e5f60")
    prefix = String(example="ck_3f9a0c1b2d4e5f60", description="how the key starts, to recognise it")
    name = String()
    scopes = Array(String(), max_items=len(SCOPES))
    created_by = String(nullable=True)
    created_at = DateTime()
    last_used_at = DateTime(nullable=True)
    revoked_at = DateTime(nullable=True)


class ApiKeyList(Schema):
    items = Array(Nested(ApiKey), max_items=1000)


class ApiKeyCreate(Schema):
    name = String(min_length=1, max_length=100, example="Zapier")
    scopes = Array(Choice(*SCOPES), max_items=len(SCOPES), example=["conversations:read", "messages:write"])


class ApiKeyCreated(Schema):
    """The new key; ``key`` is shown this once and never again."""

    api_key = Nested(ApiKey)
    key = String(example="ck_3f9a0c1b2d4e5f60:…", description="send as Authorization: Bearer <key>")


def _view(row) -> ApiKey:
    return ApiKey(id=row["id"], prefix="ck_" + row["id"], name=row["name"], scopes=list(row["scopes"]),
                  created_by=str(row["created_by"]) if row["created_by"] else None, created_at=row["created_at"],
                  last_used_at=row["last_used_at"], revoked_at=row["revoked_at"])


_COLUMNS = "SELECT id, name, scopes, created_by, created_at, last_used_at, revoked_at FROM api_keys"


@routes.route("GET", "/v1/orgs/{org_id}/api-keys", permission="api_keys.manage", response=ApiKeyList,
              summary="The organisation's API keys (never their secrets)")
async def list_api_keys(call: Call) -> ApiKeyList:
    async with call.db() as conn:
        rows = await conn.fetch(_COLUMNS + " WHERE org_id = $1 ORDER BY created_at DESC, id", call.org_id)
    return ApiKeyList(items=[_view(r) for r in rows])


@routes.route("POST", "/v1/orgs/{org_id}/api-keys", permission="api_keys.manage", reauth=True, body=ApiKeyCreate,
              response=ApiKeyCreated, status=201, summary="Create an API key (shown once)")
async def create_api_key(call: Call) -> ApiKeyCreated:
    scopes = sorted(set(call.body.scopes), key=SCOPES.index)
    if not scopes:
        raise ApiError("unprocessable_entity", details={"field": "scopes", "reason": "must name at least one scope"})
    key_id, secret, whole = new_key()
    async with call.db() as conn:
        await conn.execute(
            "INSERT INTO api_keys (id, org_id, name, secret_hash, scopes, created_by) VALUES ($1, $2, $3, $4, $5, $6)",
            key_id, call.org_id, call.body.name, secret_hash(secret), scopes, call.user_id)
        row = await conn.fetchrow(_COLUMNS + " WHERE org_id = $1 AND id = $2", call.org_id, key_id)
        await call.audit(conn, "api_key.created", "api_key", key_id, {"name": call.body.name, "scopes": scopes})
    return ApiKeyCreated(api_key=_view(row), key=whole)


@routes.route("DELETE", "/v1/orgs/{org_id}/api-keys/{key_id}", permission="api_keys.manage", status=204,
              params={"key_id": String(pattern=KEY_ID.pattern)},
              summary="Revoke an API key", description="Requests with it are answered 401 from now on.")
async def revoke_api_key(call: Call) -> None:
    key_id = call.path["key_id"]
    async with call.db() as conn:
        status = await conn.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL",
            call.org_id, key_id)
        if status != "UPDATE 1":
            exists = await conn.fetchval("SELECT true FROM api_keys WHERE org_id = $1 AND id = $2", call.org_id, key_id)
            if not exists:
                raise ApiError("not_found")
            return  # already revoked: the same end state
        await call.audit(conn, "api_key.revoked", "api_key", key_id)
