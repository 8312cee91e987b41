"""REST: contacts — list, find-or-create by ``external_id`` / ``email``, get, update, erase.

Your server is trusted here (an API key or a signed-in member): fields are written as given,
``custom_data`` merges key by key and ``null`` removes a key.  Deleting a contact is the
erasure of docs/rest-api.md: the contact, their conversations and messages leave PostgreSQL
and Redis, and no webhook about them is sent afterwards.
"""

from __future__ import annotations

import uuid

import asyncpg

from admin_api import identity, keys
from admin_api.call import Call
from admin_api.errors import ApiError
from admin_api.rest import decode_cursor, encode_cursor, engine_error
from admin_api.rest.conversations import tags_of
from admin_api.routing import RouteTable
from admin_api.schemas import Array, Boolean, DateTime, Integer, Nested, Object, Schema, String, Uuid
from engine import erasure, webhooks
from engine.errors import EngineError

routes = RouteTable(tag="contacts")

MAX_TAGS = 50
_FIELDS = ("external_id", "email", "name", "company", "phone", "avatar_url")


class Contact(Schema):
    id = Uuid()
    external_id = String(nullable=True)
    email = String(nullable=True)
    name = String(nullable=True)
    company = String(nullable=True)
    phone = String(nullable=True)
    avatar_url = String(nullable=True)
    custom_data = Object()
    verified = Boolean(description="identity proven by a widget session's user_hash")
    shop = String(nullable=True)
    shop_verified = Boolean(description="shop proven by shop_hash: only then linked to revenue data")
    tags = Array(String(), max_items=MAX_TAGS)
    created_at = DateTime()
    updated_at = DateTime()
    last_seen_at = DateTime()


class ContactPage(Schema):
    items = Array(Nested(Contact), max_items=100)
    next_cursor = String(nullable=True)


class ContactQuery(Schema):
    email = String(format="email", required=False)
    external_id = String(max_length=255, strip=False, required=False)
    tag = String(max_length=64, required=False)
    limit = Integer(minimum=1, maximum=100, default=25)
    cursor = String(max_length=200, required=False)


class ContactFields(Schema):
    external_id = String(min_length=1, max_length=255, strip=False, required=False, nullable=True)
    email = String(format="email", required=False, nullable=True)
    name = String(max_length=255, required=False, nullable=True)
    company = String(max_length=255, required=False, nullable=True)
    phone = String(max_length=50, required=False, nullable=True)
    avatar_url = String(max_length=2000, pattern=r"https?://[^\s]+", required=False, nullable=True)
    custom_data = Object(max_keys=identity.MAX_CUSTOM_KEYS, required=False,
                         description="merged key by key; a null value removes the key")
    tags = Array(String(max_length=64), max_items=MAX_TAGS, required=False, description="replaces every tag")


class ContactResult(Schema):
    created = Boolean(description="false: an existing contact was found")
    contact = Nested(Contact)


_SELECT = """
SELECT c.id, c.external_id, c.email, c.name, c.company, c.phone, c.avatar_url, c.custom_data, c.verified, c.shop,
       c.shop_verified, c.created_at, c.updated_at, c.last_seen_at,
       COALESCE((SELECT array_agg(t.name ORDER BY t.name) FROM contact_tags ct JOIN tags t ON t.id = ct.tag_id
                 WHERE ct.contact_id = c.id), '{}') AS tags
FROM contacts c"""


def _view(row) -> Contact:
    return Contact(**{name: (list(row[name]) if name == "tags" else row[name]) for name in Contact.__fields__})


async def _load(conn, org_id, contact_id) -> asyncpg.Record:
    row = await conn.fetchrow(_SELECT + " WHERE c.org_id = $1 AND c.id = $2", org_id, contact_id)
    if row is None:
        raise ApiError("not_found")
    return row


def _custom(value) -> dict:
    try:
        return identity.check_custom_data(value)
    except identity.IdentityError as exc:
        raise ApiError("unprocessable_entity", details={"field": exc.field, "reason": exc.reason}) from None


async def _set_tags(conn, org_id, contact_id, names: list[str]) -> None:
    await conn.execute("DELETE FROM contact_tags WHERE org_id = $1 AND contact_id = $2", org_id, contact_id)
    if names:
        await conn.execute("INSERT INTO tags (org_id, name) SELECT $1, n FROM unnest($2::text[]) AS n "
                           "ON CONFLICT (org_id, name) DO NOTHING", org_id, names)
        await conn.execute("INSERT INTO contact_tags (org_id, contact_id, tag_id) SELECT $1, $2, t.id FROM tags t "
                           "WHERE t.org_id = $1 AND t.name = ANY($3::text[]) ON CONFLICT DO NOTHING",
                           org_id, contact_id, names)


def _conflict() -> ApiError:
    return ApiError("conflict", "Another contact has this external_id.", details={"field": "external_id"})


@routes.route("GET", "/v1/orgs/{org_id}/contacts", permission="contacts.read", api_scope="contacts:read",
              query=ContactQuery, response=ContactPage, summary="Contacts, newest first, with filters")
async def list_contacts(call: Call) -> ContactPage:
    q = call.query
    conds, args = ["c.org_id = $1"], [call.org_id]
    for name in ("email", "external_id"):
        if q.is_set(name):
            args.append(getattr(q, name))
            conds.append(f"c.{name} = ${len(args)}")
    if q.is_set("tag"):
        args.append(tags_of([q.tag], "tag")[0])
        conds.append(f"EXISTS (SELECT 1 FROM contact_tags ct JOIN tags t ON t.id = ct.tag_id "
                     f"WHERE ct.contact_id = c.id AND t.name = ${len(args)})")
    if q.is_set("cursor"):
        created, after = decode_cursor(q.cursor)
        args.extend([created, after])
        conds.append(f"(c.created_at, c.id) < (${len(args) - 1}, ${len(args)})")
    args.append(q.limit + 1)
    async with call.db() as conn:
        rows = await conn.fetch(f"{_SELECT} WHERE {' AND '.join(conds)} ORDER BY c.created_at DESC, c.id DESC "
                                f"LIMIT ${len(args)}", *args)
    more = len(rows) > q.limit
    rows = rows[:q.limit]
    return ContactPage(items=[_view(r) for r in rows],
                       next_cursor=encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more else None)


@routes.route("POST", "/v1/orgs/{org_id}/contacts", permission="contacts.write", api_scope="contacts:write",
              body=ContactFields, response=ContactResult,
              summary="Find a contact by external_id (then email), or create it",
              description="Needs external_id or email. An existing contact is returned unchanged, except that an "
                          "email match without an external_id takes the given external_id.")
async def find_or_create_contact(call: Call) -> ContactResult:
    body = call.body
    external_id = body.external_id if body.is_set("external_id") else None
    email = body.email if body.is_set("email") else None
    if not external_id and not email:
        raise ApiError("unprocessable_entity", details={"field": "external_id", "reason": "external_id or email "
                                                                                           "is required"})
    custom = _custom(body.custom_data) if body.is_set("custom_data") else {}
    tags = tags_of(body.tags, "tags") if body.is_set("tags") else []
    for _ in range(3):
        try:
            async with call.db() as conn:
                found = None
                if external_id:
                    found = await conn.fetchval("SELECT id FROM contacts WHERE org_id = $1 AND external_id = $2",
                                                call.org_id, external_id)
                if found is None and email:
                    found = await conn.fetchval(
                        "SELECT id FROM contacts WHERE org_id = $1 AND email = $2 AND "
                        "(external_id IS NULL OR external_id = $3) ORDER BY external_id IS NULL, created_at DESC "
                        "LIMIT 1 FOR UPDATE", call.org_id, email, external_id)
                    if found is not None and external_id:
                        await conn.execute("UPDATE contacts SET external_id = $3, updated_at = now() "
                                           "WHERE org_id = $1 AND id = $2 AND external_id IS NULL",
                                           call.org_id, found, external_id)
                        row = await _load(conn, call.org_id, found)
                        await webhooks.enqueue(conn, call.org_id,
                                               [webhooks.contact_event(call.org_id, "contact.identified", row)])
                if found is not None:
                    return ContactResult(created=False, contact=_view(await _load(conn, call.org_id, found)))
                contact_id = uuid.uuid4()
                values = {name: getattr(body, name) for name in _FIELDS if body.is_set(name)}
                cols = ["id", "org_id", "custom_data", *values]
                await conn.execute(
                    f"INSERT INTO contacts ({', '.join(cols)}) VALUES ("
                    + ", ".join(f"${i + 1}" for i in range(len(cols))) + ")",
                    contact_id, call.org_id, {k: v for k, v in custom.items() if v is not None}, *values.values())
                if tags:
                    await _set_tags(conn, call.org_id, contact_id, tags)
                row = await _load(conn, call.org_id, contact_id)
                await webhooks.enqueue(conn, call.org_id, [webhooks.contact_event(call.org_id, "contact.created", row)])
                return ContactResult(created=True, contact=_view(row))
        except asyncpg.UniqueViolationError:
            continue  # created concurrently by another request: find it on the next round
    raise ApiError("conflict", "The contact changed concurrently; retry.")


@routes.route("GET", "/v1/orgs/{org_id}/contacts/{contact_id}", permission="contacts.read", api_scope="contacts:read",
              response=Contact, summary="One contact")
async def get_contact(call: Call) -> Contact:
    async with call.db() as conn:
        return _view(await _load(conn, call.org_id, call.path["contact_id"]))


@routes.route("PATCH", "/v1/orgs/{org_id}/contacts/{contact_id}", permission="contacts.write",
              api_scope="contacts:write", body=ContactFields, response=Contact, summary="Update a contact",
              errors=("conflict",))
async def update_contact(call: Call) -> Contact:
    body, contact_id = call.body, call.path["contact_id"]
    async with call.db() as conn:
        current = await conn.fetchrow("SELECT external_id, email, custom_data FROM contacts "
                                      "WHERE org_id = $1 AND id = $2 FOR UPDATE", call.org_id, contact_id)
        if current is None:
            raise ApiError("not_found")
        changes = {name: getattr(body, name) for name in _FIELDS if body.is_set(name)}
        if body.is_set("custom_data"):
            try:
                changes["custom_data"] = identity.merge_custom_data(current["custom_data"] or {},
                                                                    _custom(body.custom_data), overwrite=True)
            except identity.IdentityError as exc:
                raise ApiError("unprocessable_entity", details={"field": exc.field, "reason": exc.reason}) from None
        if changes:
            sets = ", ".join(f"{c} = ${i + 3}" for i, c in enumerate(changes))
            try:
                async with conn.transaction():
                    await conn.execute(f"UPDATE contacts SET {sets}, updated_at = now() WHERE org_id = $1 AND id = $2",
                                       call.org_id, contact_id, *changes.values())
            except asyncpg.UniqueViolationError:
                raise _conflict() from None
        if body.is_set("tags"):
            await _set_tags(conn, call.org_id, contact_id, tags_of(body.tags, "tags"))
        row = await _load(conn, call.org_id, contact_id)
        identified = any(name in changes and changes[name] and changes[name] != current[name]
                         for name in ("external_id", "email"))
        if identified:
            await webhooks.enqueue(conn, call.org_id, [webhooks.contact_event(call.org_id, "contact.identified", row)])
        return _view(row)


@routes.route("DELETE", "/v1/orgs/{org_id}/contacts/{contact_id}", permission="contacts.erase",
              api_scope="contacts:write", status=204,
              summary="Erase a contact: the contact, their conversations and messages, everywhere",
              description="Removes them from PostgreSQL and from Redis (streams included), closes their sockets, "
                          "and sends no further webhook about them. Audited.")
async def erase_contact(call: Call) -> None:
    engine = call.app[keys.ENGINE]
    contact_id = call.path["contact_id"]
    try:
        report = await erasure.erase_contact(call.config, call.app[keys.DB], call.app[keys.REDIS], call.org_id,
                                             contact_id, control=engine.publish_control)
    except EngineError as exc:
        raise engine_error(exc) from None
    if report is None:
        raise ApiError("not_found")
    async with call.db() as conn:
        await call.audit(conn, "contact.erased", "contact", contact_id,
                         {"conversations": len(report.conversations), "stream_entries": report.stream_entries})
