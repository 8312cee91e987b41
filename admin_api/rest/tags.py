"""REST: the organisation's tags (lowercase-hyphenated names, shared by conversations and contacts).

Tags are put on conversations with ``PATCH .../conversations/{id}`` and on contacts with
``PATCH .../contacts/{id}``; a tag used there is created on the way.  Creating one here makes
it available before first use (pickers in the inbox).
"""

from __future__ import annotations

from admin_api.call import Call
from admin_api.errors import ApiError
from admin_api.routing import RouteTable
from admin_api.schemas import Array, DateTime, Nested, Schema, String, Uuid
from engine.events import normalise_tag

routes = RouteTable(tag="tags")


class Tag(Schema):
    id = Uuid()
    name = String(example="vip-customer")
    created_at = DateTime()


class TagList(Schema):
    items = Array(Nested(Tag), max_items=10000)


class TagCreate(Schema):
    name = String(min_length=1, max_length=64, example="VIP customer",
                  description="normalised: lowercase, other characters become hyphens")


@routes.route("GET", "/v1/orgs/{org_id}/tags", permission="conversations.read", api_scope="conversations:read",
              response=TagList, summary="The organisation's tags, by name")
async def list_tags(call: Call) -> TagList:
    async with call.db() as conn:
        rows = await conn.fetch("SELECT id, name, created_at FROM tags WHERE org_id = $1 ORDER BY name", call.org_id)
    return TagList(items=[Tag(**dict(r)) for r in rows])


@routes.route("POST", "/v1/orgs/{org_id}/tags", permission="conversations.write", api_scope="conversations:write",
              body=TagCreate, response=Tag, status=201, summary="Create a tag", errors=("conflict",))
async def create_tag(call: Call) -> Tag:
    name = normalise_tag(call.body.name)
    if name is None:
        raise ApiError("unprocessable_entity", details={"field": "name", "reason": "is not a tag name"})
    async with call.db() as conn:
        row = await conn.fetchrow("INSERT INTO tags (org_id, name) VALUES ($1, $2) ON CONFLICT (org_id, name) "
                                  "DO NOTHING RETURNING id, name, created_at", call.org_id, name)
    if row is None:
        raise ApiError("conflict", "This tag exists already.", details={"name": name})
    return Tag(**dict(row))
