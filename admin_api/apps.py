"""Apps: one per Shopify app an organisation supports.

Each app has a public key ``app_…`` (what the widget embeds), an identity secret (64 hex
characters; encrypted at rest with AES-256-GCM bound to the row, visible to admins and owners,
rotatable), the origins allowed to open widget sessions, the widget settings and whether
sessions must prove the shopper's identity.
"""

from __future__ import annotations

import re
import secrets
import uuid
from urllib.parse import urlsplit

import asyncpg

from admin_api import keys
from admin_api.billing.routes import PLANS
from admin_api.billing.service import check_app_available
from admin_api.call import Call
from admin_api.errors import ApiError
from admin_api.routing import RouteTable
from admin_api.schemas import Array, Boolean, Choice, DateTime, Nested, Schema, String, Uuid
from convot.crypto import row_aad

routes = RouteTable(tag="apps")

PUBLIC_KEY = re.compile(r"^app_[A-Za-z0-9_-]{1,64}$")
MAX_ORIGINS = 20
COLOR = r"#[0-9a-fA-F]{3}(?:[0-9a-fA-F]{3})?"
SHOPIFY_APP_GID = r"gid://partners/App/[0-9]{1,20}"
DEFAULT_SETTINGS = {"color": "#4f46e5", "greeting": "Hi! How can we help?", "default_section": "conversation",
                    "email_prompt": True}


def new_public_key() -> str:
    return "app_" + secrets.token_urlsafe(12)


def new_identity_secret() -> str:
    return secrets.token_hex(32)


def secret_aad(org_id, app_id) -> bytes:
    return row_aad("apps", "identity_secret_enc", org_id, app_id)


def normalise_origin(value: str, development: bool) -> str | None:
    """``https://shop.example.com`` (scheme, host, port only) or None when not an origin.

    ``http://`` only for loopback hosts, or anywhere in development."""
    if not isinstance(value, str) or len(value) > 300 or any(c.isspace() for c in value):
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if not host or parts.username or parts.password or parts.query or parts.fragment or parts.path not in ("", "/"):
        return None
    loopback = host in ("localhost", "127.0.0.1", "[::1]", "::1") or host.endswith(".localhost")
    if parts.scheme == "http" and not (development or loopback):
        return None
    if parts.scheme not in ("http", "https"):
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}" + (f":{port}" if port and port != default else "")


class AppSettings(Schema):
    """What the widget shows."""

    color = String(pattern=COLOR, default=DEFAULT_SETTINGS["color"], description="brand colour, #rgb or #rrggbb")
    greeting = String(max_length=280, default=DEFAULT_SETTINGS["greeting"])
    default_section = Choice("conversation", "new_conversation", default=DEFAULT_SETTINGS["default_section"],
                             description="what the panel opens on: the latest conversation or a new one")
    email_prompt = Boolean(default=True, description="ask for an email after the first message when none is known")


class AppSettingsUpdate(Schema):
    color = String(pattern=COLOR, required=False)
    greeting = String(max_length=280, required=False)
    default_section = Choice("conversation", "new_conversation", required=False)
    email_prompt = Boolean(required=False)


class App(Schema):
    """An app (widget installation); the identity secret is not part of it."""

    id = Uuid()
    public_key = String(example="app_3xYk9QzL0b1c2d3e", description="what the widget embeds as app_id")
    name = String()
    allowed_origins = Array(String(), max_items=MAX_ORIGINS)
    require_verification = Boolean(description="refuse widget sessions without a valid user_hash")
    settings = Nested(AppSettings)
    shopify_app_gid = String(nullable=True)
    identity_secret_rotated_at = DateTime()
    created_at = DateTime()
    updated_at = DateTime()


class AppList(Schema):
    items = Array(Nested(App), max_items=1000)


class AppCreate(Schema):
    name = String(min_length=1, max_length=200, example="Northwind Support")
    allowed_origins = Array(String(max_length=300), max_items=MAX_ORIGINS, default=[],
                            example=["https://admin.shopify.com"])
    require_verification = Boolean(default=False)
    settings = Nested(AppSettingsUpdate, required=False)
    shopify_app_gid = String(pattern=SHOPIFY_APP_GID, required=False, nullable=True,
                             description="links the app to its Shopify Partner API data")


class AppUpdate(Schema):
    name = String(min_length=1, max_length=200, required=False)
    allowed_origins = Array(String(max_length=300), max_items=MAX_ORIGINS, required=False)
    require_verification = Boolean(required=False)
    settings = Nested(AppSettingsUpdate, required=False)
    shopify_app_gid = String(pattern=SHOPIFY_APP_GID, required=False, nullable=True)


class AppCreated(Schema):
    """The new app and its identity secret (also readable later by admins)."""

    app = Nested(App)
    identity_secret = String(description="64 hex characters; compute user_hash / shop_hash with it on your server")


class IdentitySecret(Schema):
    identity_secret = String(description="64 hex characters")
    rotated_at = DateTime()


def settings_of(stored: dict | None) -> AppSettings:
    merged = {**DEFAULT_SETTINGS, **{k: v for k, v in (stored or {}).items() if k in DEFAULT_SETTINGS}}
    return AppSettings(**merged)


def _view(row: asyncpg.Record) -> App:
    return App(id=row["id"], public_key=row["public_key"], name=row["name"],
               allowed_origins=list(row["allowed_origins"]), require_verification=row["require_verification"],
               settings=settings_of(row["settings"]), shopify_app_gid=row["shopify_app_gid"],
               identity_secret_rotated_at=row["identity_secret_rotated_at"], created_at=row["created_at"],
               updated_at=row["updated_at"])


_COLUMNS = """SELECT id, public_key, name, allowed_origins, require_verification, settings, shopify_app_gid,
                     identity_secret_rotated_at, created_at, updated_at FROM apps"""


def _origins(call: Call, values: list[str]) -> list[str]:
    out: list[str] = []
    for i, value in enumerate(values):
        origin = normalise_origin(value, call.config.admin_api.development)
        if origin is None:
            raise ApiError("unprocessable_entity", details={
                "field": f"allowed_origins[{i}]",
                "reason": "must be an origin such as https://shop.example.com (https, no path)"})
        if origin not in out:
            out.append(origin)
    return out


def _settings_changes(update: AppSettingsUpdate | None) -> dict:
    if update is None or update is False:
        return {}
    return {name: getattr(update, name) for name in AppSettingsUpdate.__fields__ if update.is_set(name)}


async def _load(conn, org_id, app_id, *, lock: bool = False) -> asyncpg.Record:
    row = await conn.fetchrow(_COLUMNS + " WHERE org_id = $1 AND id = $2" + (" FOR UPDATE" if lock else ""),
                              org_id, app_id)
    if row is None:
        raise ApiError("not_found")
    return row


@routes.route("GET", "/v1/orgs/{org_id}/apps", permission="apps.read", response=AppList,
              summary="The organisation's apps")
async def list_apps(call: Call) -> AppList:
    async with call.db() as conn:
        rows = await conn.fetch(_COLUMNS + " WHERE org_id = $1 ORDER BY created_at, id", call.org_id)
    return AppList(items=[_view(r) for r in rows])


@routes.route("POST", "/v1/orgs/{org_id}/apps", permission="apps.manage", body=AppCreate, response=AppCreated,
              status=201, summary="Create an app (widget installation) with a new identity secret",
              errors=("app_limit_reached",))
async def create_app(call: Call) -> AppCreated:
    body = call.body
    origins = _origins(call, body.allowed_origins)
    settings = {**DEFAULT_SETTINGS, **_settings_changes(body.settings if body.is_set("settings") else None)}
    app_id = uuid.uuid4()
    secret = new_identity_secret()
    blob = call.app[keys.ENCRYPTOR].encrypt(secret.encode(), secret_aad(call.org_id, app_id))
    async with call.db() as conn:
        # the plan's app limit (docs/billing.md); locks the organisation row until commit
        await check_app_available(conn, call.org_id, call.app[PLANS])
        for _ in range(3):
            public_key = new_public_key()
            try:
                async with conn.transaction():
                    await conn.execute(
                        """INSERT INTO apps (id, org_id, public_key, name, identity_secret_enc, allowed_origins,
                                             require_verification, settings, shopify_app_gid)
                           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
                        app_id, call.org_id, public_key, body.name, blob, origins, body.require_verification,
                        settings, body.shopify_app_gid if body.is_set("shopify_app_gid") else None)
                break
            except asyncpg.UniqueViolationError:
                continue  # a public key collision (2^-96): draw another
        row = await _load(conn, call.org_id, app_id)
        await call.audit(conn, "app.created", "app", app_id, {"name": body.name, "origins": len(origins)})
    return AppCreated(app=_view(row), identity_secret=secret)


@routes.route("GET", "/v1/orgs/{org_id}/apps/{app_id}", permission="apps.read", response=App, summary="One app")
async def get_app(call: Call) -> App:
    async with call.db() as conn:
        return _view(await _load(conn, call.org_id, call.path["app_id"]))


@routes.route("PATCH", "/v1/orgs/{org_id}/apps/{app_id}", permission="apps.manage", body=AppUpdate, response=App,
              summary="Change an app's name, origins, settings or verification requirement")
async def update_app(call: Call) -> App:
    body, app_id = call.body, call.path["app_id"]
    async with call.db() as conn:
        row = await _load(conn, call.org_id, app_id, lock=True)
        sets, args, changed = [], [call.org_id, app_id], []

        def put(column: str, value) -> None:
            args.append(value)
            sets.append(f"{column} = ${len(args)}")
            changed.append(column)

        if body.is_set("name"):
            put("name", body.name)
        if body.is_set("allowed_origins"):
            put("allowed_origins", _origins(call, body.allowed_origins))
        if body.is_set("require_verification"):
            put("require_verification", body.require_verification)
        if body.is_set("settings"):
            put("settings", {**settings_of(row["settings"]).dump(), **_settings_changes(body.settings)})
        if body.is_set("shopify_app_gid"):
            put("shopify_app_gid", body.shopify_app_gid)
        if sets:
            await conn.execute(f"UPDATE apps SET {', '.join(sets)}, updated_at = now() "
                               "WHERE org_id = $1 AND id = $2", *args)
            await call.audit(conn, "app.updated", "app", app_id, {"fields": changed})
        return _view(await _load(conn, call.org_id, app_id))


@routes.route("DELETE", "/v1/orgs/{org_id}/apps/{app_id}", permission="apps.manage", reauth=True, status=204,
              summary="Delete an app", description="Its widget stops working at once; its conversations stay "
                                                   "(without app); its visitor tokens are deleted.")
async def delete_app(call: Call) -> None:
    app_id = call.path["app_id"]
    async with call.db() as conn:
        row = await _load(conn, call.org_id, app_id, lock=True)
        await conn.execute("DELETE FROM apps WHERE org_id = $1 AND id = $2", call.org_id, app_id)
        await call.audit(conn, "app.deleted", "app", app_id, {"name": row["name"]})


@routes.route("GET", "/v1/orgs/{org_id}/apps/{app_id}/identity-secret", permission="apps.manage",
              response=IdentitySecret, summary="Read the app's identity secret (audited)")
async def get_identity_secret(call: Call) -> IdentitySecret:
    app_id = call.path["app_id"]
    async with call.db() as conn:
        row = await conn.fetchrow("SELECT identity_secret_enc, identity_secret_rotated_at FROM apps "
                                  "WHERE org_id = $1 AND id = $2", call.org_id, app_id)
        if row is None:
            raise ApiError("not_found")
        secret = call.app[keys.ENCRYPTOR].decrypt(row["identity_secret_enc"], secret_aad(call.org_id, app_id)).decode()
        await call.audit(conn, "app.identity_secret_viewed", "app", app_id)
    return IdentitySecret(identity_secret=secret, rotated_at=row["identity_secret_rotated_at"])


@routes.route("POST", "/v1/orgs/{org_id}/apps/{app_id}/identity-secret/rotate", permission="apps.manage",
              reauth=True, response=IdentitySecret, summary="Replace the identity secret",
              description="Hashes computed with the old secret stop verifying at once: deploy the new secret to "
                          "your server right after.")
async def rotate_identity_secret(call: Call) -> IdentitySecret:
    app_id = call.path["app_id"]
    secret = new_identity_secret()
    blob = call.app[keys.ENCRYPTOR].encrypt(secret.encode(), secret_aad(call.org_id, app_id))
    async with call.db() as conn:
        rotated = await conn.fetchval(
            "UPDATE apps SET identity_secret_enc = $3, identity_secret_rotated_at = now(), updated_at = now() "
            "WHERE org_id = $1 AND id = $2 RETURNING identity_secret_rotated_at", call.org_id, app_id, blob)
        if rotated is None:
            raise ApiError("not_found")
        await call.audit(conn, "app.identity_secret_rotated", "app", app_id)
    return IdentitySecret(identity_secret=secret, rotated_at=rotated)
