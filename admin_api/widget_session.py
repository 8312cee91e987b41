"""``POST /v1/widget/session``: the widget's one HTTP call (contract in docs/widget.md).

The widget exchanges its app's public key, its stored visitor token and the optional identify
payload for a shopper gateway token (<= 15 minutes, scoped to one contact of one app) and a
long-lived opaque visitor token, so the same browser finds its conversations again.  Who the
contact is, and what may change, is decided by the pure ``admin_api.identity``.

CORS: the answer carries ``Access-Control-Allow-Origin`` only for the app's allowed origins
(``widget_cors`` middleware); another origin is refused with 403 ``forbidden`` and no CORS
headers, so its page cannot read anything.  The preflight cannot name the app (it has no
body), so it is answered for any origin: it only lets the browser send the request, which the
handler then judges.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid

import asyncpg
from aiohttp import web

from admin_api import identity, keys
from admin_api.apps import PUBLIC_KEY, normalise_origin, secret_aad, settings_of
from admin_api.call import Call
from admin_api.errors import ApiError
from admin_api.routing import RouteTable
from admin_api.schemas import Array, Boolean, Integer, Nested, Object, Schema, String, Uuid
from admin_api.throttle import Limit
from convot.db import scoped
from engine import keys as engine_keys
from engine import webhooks
from engine.availability import Presence
from engine.contacts import move_live_conversations

routes = RouteTable(tag="widget")

PATH = "/v1/widget/session"
CORS_DENIED = web.RequestKey("widget_cors_denied", bool)
VISITOR_TOKEN = re.compile(r"^vt_[A-Za-z0-9_-]{43}$")
MAX_CONVERSATIONS = 20
MAX_AGENTS = 10
_CONTACT_COLUMNS = """id, external_id, email, name, company, phone, avatar_url, custom_data, verified, shop,
                      shop_verified, created_at"""


# ---- schemas -----------------------------------------------------------------------------------

class IdentifyFields(Schema):
    """Who the shopper is (docs/widget.md, identify)."""

    email = String(format="email", required=False, nullable=True)
    external_id = String(min_length=1, max_length=255, strip=False, required=False, nullable=True)
    name = String(max_length=255, required=False, nullable=True)
    company = String(max_length=255, required=False, nullable=True)
    phone = String(max_length=50, required=False, nullable=True)
    avatar_url = String(max_length=2000, pattern=r"https?://[^\s]+", required=False, nullable=True)
    custom_data = Object(max_keys=identity.MAX_CUSTOM_KEYS, required=False, nullable=True)
    user_hash = String(max_length=128, required=False, nullable=True,
                       description="hex HMAC-SHA256 of external_id (else email) keyed by the identity secret")
    shop = String(max_length=255, pattern=identity.SHOP.pattern, required=False, nullable=True,
                  example="ana.myshopify.com")
    shop_hash = String(max_length=128, required=False, nullable=True, description="hex HMAC-SHA256 of shop")


class WidgetSessionRequest(Schema):
    app_id = String(pattern=PUBLIC_KEY.pattern, example="app_3xYk9QzL0b1c2d3e")
    visitor_token = String(max_length=4096, strip=False, required=False, nullable=True,
                           description="from an earlier answer; unknown or malformed counts as none")
    identify = Nested(IdentifyFields, required=False, nullable=True)


class SessionContact(Schema):
    id = Uuid()
    name = String(nullable=True)
    email = String(nullable=True)
    verified = Boolean()


class SessionAppSettings(Schema):
    color = String()
    greeting = String()
    default_section = String()
    email_prompt = Boolean()


class SessionApp(Schema):
    name = String()
    settings = Nested(SessionAppSettings)


class SessionConversation(Schema):
    id = Uuid()
    last_seq = Integer()
    status = String()


class SessionAgent(Schema):
    id = Uuid()
    name = String()
    avatar_url = String(nullable=True)


class SessionTeam(Schema):
    online = Boolean()
    agents = Array(Nested(SessionAgent), max_items=MAX_AGENTS)


class WidgetSession(Schema):
    """A shopper gateway token and what the widget shows."""

    token = String(description="gateway JWT, shopper role, at most 15 minutes")
    expires_at = Integer(description="Unix seconds")
    visitor_token = String(description="opaque; store it and send it back")
    gateway_url = String()
    contact = Nested(SessionContact)
    app = Nested(SessionApp)
    conversations = Array(Nested(SessionConversation), max_items=MAX_CONVERSATIONS,
                          description="most recent first")
    team = Nested(SessionTeam)


# ---- CORS ----------------------------------------------------------------------------------------

def _cors_headers(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin", "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": "Content-Type", "Access-Control-Max-Age": "600",
            "Access-Control-Expose-Headers": "Retry-After"}


@web.middleware
async def widget_cors(request: web.Request, handler) -> web.StreamResponse:
    """Outermost middleware: CORS for the widget session path only (nowhere else)."""
    if request.path != PATH:
        return await handler(request)
    origin = request.headers.get("Origin")
    if request.method == "OPTIONS":
        response = web.Response(status=204)
        if origin and normalise_origin(origin, development=True) == origin:
            response.headers.update(_cors_headers(origin))
        response.headers["Cache-Control"] = "no-store"
        return response
    response = await handler(request)
    if origin and not request.get(CORS_DENIED) and normalise_origin(origin, development=True) == origin:
        response.headers.update(_cors_headers(origin))
    return response


# ---- the session ---------------------------------------------------------------------------------

def new_visitor_token() -> str:
    return "vt_" + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _identify(call: Call) -> identity.Identify | None:
    body = call.body
    if not body.is_set("identify") or body.identify is None:
        return None
    fields = body.identify
    given = {name: getattr(fields, name) for name in IdentifyFields.__fields__ if fields.is_set(name)}
    if given.get("custom_data") is not None:
        try:
            identity.check_custom_data(given["custom_data"], "identify.custom_data")
        except identity.IdentityError as exc:
            raise ApiError("unprocessable_entity", details={"field": exc.field, "reason": exc.reason}) from None
    return identity.Identify(given)


async def _contact(conn, org_id, where: str, *args) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {_CONTACT_COLUMNS} FROM contacts WHERE org_id = $1 AND {where}", org_id, *args)


@routes.route("POST", PATH, permission="public", cors=True, body=WidgetSessionRequest, response=WidgetSession,
              summary="Widget session: a shopper gateway token for an app's widget",
              description="See docs/widget.md. CORS: only the app's allowed origins.",
              errors=("forbidden", "identity_verification_required", "not_found", "rate_limited"))
async def widget_session(call: Call) -> WidgetSession:
    config = call.config
    body = call.body
    limits = config.rest_api
    await call.app[keys.THROTTLE].take((Limit("widget_session_ip", limits.widget_session_ip_limit, 60), call.ip),
                                       (Limit("widget_session_app", limits.widget_session_app_limit, 60), body.app_id))
    pool = call.app[keys.DB]
    async with scoped(pool, app_key=body.app_id) as conn:
        app = await conn.fetchrow(
            """SELECT id, org_id, name, identity_secret_enc, allowed_origins, require_verification, settings
               FROM apps WHERE public_key = $1""", body.app_id)
    if app is None:
        raise ApiError("not_found", "No such app.")
    origin = call.request.headers.get("Origin")
    if origin is not None and origin not in app["allowed_origins"]:
        call.request[CORS_DENIED] = True
        raise ApiError("forbidden", "This origin may not open sessions of this app.")

    org_id, app_id = app["org_id"], app["id"]
    secret = call.app[keys.ENCRYPTOR].decrypt(app["identity_secret_enc"], secret_aad(org_id, app_id)).decode()
    ident = _identify(call)
    verification = identity.verify(ident, secret)
    if app["require_verification"] and not verification.user:
        raise ApiError("identity_verification_required")

    presented = body.visitor_token if body.is_set("visitor_token") else None
    presented_hash = token_hash(presented) if isinstance(presented, str) and VISITOR_TOKEN.match(presented) else None
    for attempt in range(3):
        try:
            outcome = await _resolve_and_store(call, pool, org_id, app_id, ident, verification, presented_hash)
            break
        except asyncpg.UniqueViolationError:
            if attempt == 2:  # two sessions created the same identity at once: the next try finds it
                raise ApiError("conflict", "Please retry.") from None
    contact, visitor_token, merged = outcome
    if merged is not None:
        from_contact, conversations = merged
        await move_live_conversations(call.app[keys.REDIS], config.engine.shards, org_id, from_contact,
                                      contact["id"], conversations, ("contact", str(contact["id"])))

    token, expires = call.app[keys.TOKENS].widget_token(org_id, contact["id"], app_id)
    conversations, team = await _view_data(call, pool, org_id, contact["id"])
    return WidgetSession(
        token=token, expires_at=expires, visitor_token=visitor_token,
        gateway_url=config.admin_api.gateway_public_url,
        contact=SessionContact(id=contact["id"], name=contact["name"], email=contact["email"],
                               verified=contact["verified"]),
        app=SessionApp(name=app["name"], settings=SessionAppSettings(**settings_of(app["settings"]).dump())),
        conversations=conversations, team=team)


async def _resolve_and_store(call: Call, pool, org_id, app_id, ident, verification, presented_hash):
    """One transaction: find the contact, apply the resolution, merge, tokens, webhooks."""
    async with scoped(pool, org_id=org_id) as conn:
        visitor = None
        if presented_hash is not None:
            row = await conn.fetchrow(
                f"""SELECT {', '.join('c.' + c.strip() for c in _CONTACT_COLUMNS.split(','))}
                    FROM visitors v JOIN contacts c ON c.id = v.contact_id
                    WHERE v.token_hash = $1 AND v.org_id = $2 AND v.app_id = $3 FOR UPDATE OF v""",
                presented_hash, org_id, app_id)
            visitor = identity.ContactState.from_row(row) if row is not None else None
        by_external, by_email = None, []
        if ident is not None and ident.get("external_id"):
            rows = await _contact(conn, org_id, "external_id = $2", ident.get("external_id"))
            by_external = identity.ContactState.from_row(rows[0]) if rows else None
        if ident is not None and ident.get("email"):
            rows = await _contact(conn, org_id, "email = $2 ORDER BY verified DESC, last_seen_at DESC LIMIT 10",
                                  ident.get("email"))
            by_email = [identity.ContactState.from_row(r) for r in rows]
        try:
            res = identity.resolve(ident, verification, identity.Candidates(visitor, by_external, by_email))
        except identity.IdentityError as exc:
            raise ApiError("unprocessable_entity", details={"field": exc.field, "reason": exc.reason}) from None

        created = res.contact_id is None
        if created:
            contact_id = uuid.uuid4()
            values = {"external_id": None, "email": None, "name": None, "company": None, "phone": None,
                      "avatar_url": None, "custom_data": {}, "verified": False, "shop": None, "shop_verified": False,
                      **res.changes}
            cols = list(values)
            await conn.execute(
                f"INSERT INTO contacts (id, org_id, {', '.join(cols)}) VALUES ($1, $2, "
                + ", ".join(f"${i + 3}" for i in range(len(cols))) + ")",
                contact_id, org_id, *values.values())
        else:
            contact_id = uuid.UUID(res.contact_id)
            cols = list(res.changes)
            sets = "".join(f", {c} = ${i + 3}" for i, c in enumerate(cols))
            await conn.execute(f"UPDATE contacts SET last_seen_at = now(), updated_at = now(){sets} "
                               "WHERE org_id = $1 AND id = $2", org_id, contact_id, *res.changes.values())

        merged = None
        if res.merge_from is not None:
            merged = (res.merge_from, await _merge(conn, org_id, uuid.UUID(res.merge_from), contact_id))

        if res.new_visitor_token or presented_hash is None:
            visitor_token = new_visitor_token()
            current_hash = token_hash(visitor_token)
            await conn.execute(
                "INSERT INTO visitors (token_hash, org_id, app_id, contact_id, verified) VALUES ($1, $2, $3, $4, $5)",
                current_hash, org_id, app_id, contact_id, verification.user)
        else:
            visitor_token = call.body.visitor_token   # the browser keeps its token
            current_hash = presented_hash
            await conn.execute("UPDATE visitors SET last_seen_at = now(), verified = $3 "
                               "WHERE token_hash = $1 AND org_id = $2", current_hash, org_id, verification.user)
        if res.revoke_other_visitors:
            await conn.execute("DELETE FROM visitors WHERE org_id = $1 AND contact_id = $2 AND token_hash <> $3",
                               org_id, contact_id, current_hash)

        contact = (await _contact(conn, org_id, "id = $2", contact_id))[0]
        events = []
        if created:
            events.append(webhooks.contact_event(org_id, "contact.created", contact))
        if res.verified_now:
            events.append(webhooks.contact_event(org_id, "contact.identified", contact))
        if events:
            await webhooks.enqueue(conn, org_id, events)
    return contact, visitor_token, merged


async def _merge(conn, org_id, from_contact: uuid.UUID, into: uuid.UUID) -> list[str]:
    """Move the browser's unproven contact into the verified one, then delete it."""
    moved = [str(r[0]) for r in await conn.fetch(
        "UPDATE conversations SET contact_id = $3, updated_at = now() WHERE org_id = $1 AND contact_id = $2 "
        "RETURNING id", org_id, from_contact, into)]
    await conn.execute("UPDATE visitors SET contact_id = $3 WHERE org_id = $1 AND contact_id = $2",
                       org_id, from_contact, into)
    await conn.execute("UPDATE webhook_deliveries SET contact_id = $3 WHERE org_id = $1 AND contact_id = $2",
                       org_id, from_contact, into)
    await conn.execute(
        "INSERT INTO contact_tags (org_id, contact_id, tag_id) SELECT org_id, $3, tag_id FROM contact_tags "
        "WHERE org_id = $1 AND contact_id = $2 ON CONFLICT DO NOTHING", org_id, from_contact, into)
    # conversations still on their way to PostgreSQL follow the merge (trigger in migration 0400)
    await conn.execute("UPDATE contact_merges SET into_contact = $3 WHERE org_id = $1 AND into_contact = $2",
                       org_id, from_contact, into)
    await conn.execute(
        "INSERT INTO contact_merges (org_id, from_contact, into_contact) VALUES ($1, $2, $3) "
        "ON CONFLICT (org_id, from_contact) DO UPDATE SET into_contact = EXCLUDED.into_contact, merged_at = now()",
        org_id, from_contact, into)
    await conn.execute("DELETE FROM contacts WHERE org_id = $1 AND id = $2", org_id, from_contact)
    return moved


async def _view_data(call: Call, pool, org_id, contact_id) -> tuple[list[SessionConversation], SessionTeam]:
    async with scoped(pool, org_id=org_id) as conn:
        rows = await conn.fetch(
            """SELECT id, status, last_seq FROM conversations WHERE org_id = $1 AND contact_id = $2
               ORDER BY COALESCE(last_message_at, created_at) DESC, id DESC LIMIT $3""",
            org_id, contact_id, MAX_CONVERSATIONS)
        members = await conn.fetch(
            """SELECT u.id, u.name, u.avatar_url FROM members m JOIN users u ON u.id = m.user_id
               WHERE m.org_id = $1 ORDER BY m.created_at, u.id""", org_id)
        # "Online" only when someone chose Online and has an inbox open (engine/availability.py),
        # as the team presence frames the widget gets later say; those agents are shown first.
        states = await Presence(call.config, call.app[keys.REDIS], pool).states(conn, org_id)
    online = {s.user_id for s in states if s.state == "online"}
    agents = sorted(members, key=lambda a: str(a["id"]) not in online)[:MAX_AGENTS]   # stable: by join date
    # the live sequence and status are in Redis (PostgreSQL may be a moment behind)
    shard = engine_keys.shard_of(str(org_id), call.config.engine.shards)
    live = []
    if rows:
        pipe = call.app[keys.REDIS].pipeline(transaction=False)
        for r in rows:
            pipe.hmget(engine_keys.meta(shard, str(r["id"])), ["seq", "status", "deleted", "org"])
        live = await pipe.execute()
    conversations = []
    for r, state in zip(rows, live):
        seq, status = r["last_seq"], r["status"]
        if state and state[3] is not None and state[3].decode() == str(org_id):
            if state[2] == b"1":
                continue
            seq, status = max(seq, int(state[0] or 0)), (state[1] or b"open").decode()
        conversations.append(SessionConversation(id=r["id"], last_seq=seq, status=status))
    team = SessionTeam(online=bool(online), agents=[
        SessionAgent(id=a["id"], name=a["name"] or "",
                     avatar_url=a["avatar_url"] if (a["avatar_url"] or "").startswith(("https://", "http://")) else None)
        for a in agents])
    return conversations, team
