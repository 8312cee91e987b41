"""REST: conversations — list with filters and a cursor, get, start, update status/assignee/tags.

Lists read PostgreSQL (what the workers persisted, a moment behind live); a single
conversation is answered from its live state in Redis (hydrated from PostgreSQL when cold), so
what a client just changed is what it reads back.  Changes go through the engine.  A member
also gets their own read position (``read_seq``, stored by the gateway from their ``read``
frames); an API key has none.
"""

from __future__ import annotations

import uuid

from admin_api import keys
from admin_api.call import Call
from admin_api.errors import ApiError
from admin_api.rest import actor, decode_cursor, encode_cursor, engine_error, from_ms, is_api_key
from admin_api.rest.messages import MessageSend, send
from admin_api.routing import RouteTable
from admin_api.schemas import Array, Choice, DateTime, Integer, Nested, Schema, String, Uuid
from engine import keys as engine_keys
from engine.client import KEEP
from engine.errors import EngineError
from engine.events import STATUSES, normalise_tag

routes = RouteTable(tag="conversations")

MAX_TAGS = 50
_UUID_OR_NONE = r"none|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


class Conversation(Schema):
    id = Uuid()
    status = Choice(*STATUSES)
    assignee_id = Uuid(nullable=True)
    tags = Array(String(), max_items=MAX_TAGS)
    contact_id = Uuid(nullable=True)
    app_id = Uuid(nullable=True)
    channel = String()
    last_seq = Integer(description="sequence number of the latest message")
    last_message_at = DateTime(nullable=True)
    created_at = DateTime()
    read_seq = Integer(required=False, nullable=True,
                       description="members only: the highest `seq` the requesting member has read in this conversation "
                                   "(from the `read` frames of their inbox sockets), null if none; absent for API keys")


class ConversationPage(Schema):
    items = Array(Nested(Conversation), max_items=100)
    next_cursor = String(nullable=True, description="pass as `cursor` for the next page; null on the last page")


class ConversationQuery(Schema):
    status = Choice(*STATUSES, required=False)
    assignee_id = String(pattern=_UUID_OR_NONE, required=False, description="a member's id, or `none`: unassigned")
    tag = String(max_length=64, required=False)
    app_id = Uuid(required=False)
    contact_id = Uuid(required=False)
    limit = Integer(minimum=1, maximum=100, default=25)
    cursor = String(max_length=200, required=False)


class ConversationUpdate(Schema):
    status = Choice(*STATUSES, required=False)
    assignee_id = Uuid(required=False, nullable=True, description="a member of the organisation; null unassigns")
    tags = Array(String(max_length=64), max_items=MAX_TAGS, required=False, description="replaces every tag")
    add_tags = Array(String(max_length=64), max_items=MAX_TAGS, required=False)
    remove_tags = Array(String(max_length=64), max_items=MAX_TAGS, required=False)


class ConversationCreate(Schema):
    contact_id = Uuid()
    app_id = Uuid(required=False, nullable=True)
    message = Nested(MessageSend, required=False, description="a first message from the team")


_SELECT = """
SELECT c.id, c.status, c.assignee_id, c.contact_id, c.app_id, c.channel, c.last_seq, c.last_message_at, c.created_at,
       COALESCE((SELECT array_agg(t.name ORDER BY t.name) FROM conversation_tags ct JOIN tags t ON t.id = ct.tag_id
                 WHERE ct.conversation_id = c.id), '{}') AS tags
FROM conversations c"""


def _view(row, read_seqs: dict | None) -> Conversation:
    view = Conversation(id=row["id"], status=row["status"], assignee_id=row["assignee_id"], tags=list(row["tags"]),
                        contact_id=row["contact_id"], app_id=row["app_id"], channel=row["channel"],
                        last_seq=row["last_seq"], last_message_at=row["last_message_at"],
                        created_at=row["created_at"])
    if read_seqs is not None:
        view.read_seq = read_seqs.get(row["id"])
    return view


async def read_seqs(call: Call, conn, conversation_ids: list[uuid.UUID]) -> dict | None:
    """The requesting member's own read positions ({conversation id: seq}); None for an API key,
    which has no read position (the field is left out)."""
    if is_api_key(call) or call.user_id is None:
        return None
    if not conversation_ids:
        return {}
    rows = await conn.fetch("SELECT conversation_id, seq FROM read_positions "
                            "WHERE org_id = $1 AND user_id = $2 AND conversation_id = ANY($3::uuid[])",
                            call.org_id, call.user_id, conversation_ids)
    return {r["conversation_id"]: r["seq"] for r in rows}


def tags_of(values: list[str], field: str) -> list[str]:
    out = []
    for i, raw in enumerate(values):
        tag = normalise_tag(raw)
        if tag is None:
            raise ApiError("unprocessable_entity", details={"field": f"{field}[{i}]", "reason": "is not a tag name"})
        out.append(tag)
    return out


@routes.route("GET", "/v1/orgs/{org_id}/conversations", permission="conversations.read",
              api_scope="conversations:read", query=ConversationQuery, response=ConversationPage,
              summary="Conversations, newest first, with filters and cursor pagination")
async def list_conversations(call: Call) -> ConversationPage:
    q = call.query
    conds, args = ["c.org_id = $1"], [call.org_id]

    def add(sql: str, value) -> None:
        args.append(value)
        conds.append(sql.replace("?", f"${len(args)}"))

    if q.is_set("status"):
        add("c.status = ?", q.status)
    if q.is_set("assignee_id"):
        if q.assignee_id == "none":
            conds.append("c.assignee_id IS NULL")
        else:
            add("c.assignee_id = ?", uuid.UUID(q.assignee_id))
    if q.is_set("tag"):
        add("EXISTS (SELECT 1 FROM conversation_tags ct JOIN tags t ON t.id = ct.tag_id "
            "WHERE ct.conversation_id = c.id AND t.name = ?)", normalise_tag(q.tag) or "")
    if q.is_set("app_id"):
        add("c.app_id = ?", q.app_id)
    if q.is_set("contact_id"):
        add("c.contact_id = ?", q.contact_id)
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
        positions = await read_seqs(call, conn, [r["id"] for r in rows])
    return ConversationPage(items=[_view(r, positions) for r in rows],
                            next_cursor=encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more else None)


async def conversation_view(call: Call, conversation_id: uuid.UUID) -> Conversation:
    """The conversation's live state, or 404 (also for another organisation's)."""
    engine = call.app[keys.ENGINE]
    org = str(call.org_id)
    try:
        live = await engine.conversation(org, str(conversation_id))
    except EngineError as exc:
        raise engine_error(exc) from None
    if live is None:
        raise ApiError("not_found")
    async with call.db() as conn:
        row = await conn.fetchrow(_SELECT + " WHERE c.org_id = $1 AND c.id = $2", call.org_id, conversation_id)
        positions = await read_seqs(call, conn, [conversation_id])
    shard = engine_keys.shard_of(org, engine.shards)
    channel, created = await call.app[keys.REDIS].hmget(engine_keys.meta(shard, str(conversation_id)),
                                                        ["channel", "created"])
    view = Conversation(
        id=conversation_id, status=live.status, assignee_id=live.assignee_id or None, tags=list(live.tags),
        contact_id=live.contact_id or None, app_id=live.app_id or None,
        channel=row["channel"] if row else (channel or b"api").decode(),
        last_seq=max(live.seq, row["last_seq"] if row else 0),
        last_message_at=row["last_message_at"] if row else None,
        created_at=row["created_at"] if row else from_ms(int(created or 0)))
    if positions is not None:
        view.read_seq = positions.get(conversation_id)
    return view


@routes.route("GET", "/v1/orgs/{org_id}/conversations/{conversation_id}", permission="conversations.read",
              api_scope="conversations:read", response=Conversation, summary="One conversation (live state)")
async def get_conversation(call: Call) -> Conversation:
    return await conversation_view(call, call.path["conversation_id"])


async def _check_assignee(call: Call, user_id: uuid.UUID) -> None:
    async with call.db() as conn:
        member = await conn.fetchval("SELECT true FROM members WHERE org_id = $1 AND user_id = $2", call.org_id, user_id)
    if not member:
        raise ApiError("unprocessable_entity", details={"field": "assignee_id", "reason": "is not a member"})


@routes.route("PATCH", "/v1/orgs/{org_id}/conversations/{conversation_id}", permission="conversations.write",
              api_scope="conversations:write", body=ConversationUpdate, response=Conversation,
              summary="Change status, assignee or tags", description="Sockets see the change at once.")
async def update_conversation(call: Call) -> Conversation:
    body, conv = call.body, call.path["conversation_id"]
    assignee = KEEP
    if body.is_set("assignee_id"):
        assignee = body.assignee_id
        if assignee is not None:
            await _check_assignee(call, assignee)
    try:
        await call.app[keys.ENGINE].update_conversation(
            str(call.org_id), str(conv), status=body.status if body.is_set("status") else None,
            assignee_id=assignee,
            tags=tags_of(body.tags, "tags") if body.is_set("tags") else None,
            add_tags=tags_of(body.add_tags, "add_tags") if body.is_set("add_tags") else (),
            remove_tags=tags_of(body.remove_tags, "remove_tags") if body.is_set("remove_tags") else (),
            actor=actor(call))
    except EngineError as exc:
        raise engine_error(exc) from None
    return await conversation_view(call, conv)


@routes.route("POST", "/v1/orgs/{org_id}/conversations", permission="conversations.write",
              api_scope="conversations:write", body=ConversationCreate, response=Conversation, status=201,
              summary="Start a conversation with a contact (channel `api`), optionally with a first message")
async def create_conversation(call: Call) -> Conversation:
    body = call.body
    app_id = body.app_id if body.is_set("app_id") else None
    async with call.db() as conn:
        contact = await conn.fetchval("SELECT true FROM contacts WHERE org_id = $1 AND id = $2", call.org_id,
                                      body.contact_id)
        app = app_id is None or await conn.fetchval("SELECT true FROM apps WHERE org_id = $1 AND id = $2",
                                                    call.org_id, app_id)
    if not contact:
        raise ApiError("unprocessable_entity", details={"field": "contact_id", "reason": "no such contact"})
    if not app:
        raise ApiError("unprocessable_entity", details={"field": "app_id", "reason": "no such app"})
    try:
        conv = await call.app[keys.ENGINE].create_conversation(
            str(call.org_id), str(body.contact_id), str(app_id) if app_id else None, channel="api", actor=actor(call))
    except EngineError as exc:
        raise engine_error(exc) from None
    if body.is_set("message"):
        await send(call, uuid.UUID(conv), body.message)
    return await conversation_view(call, uuid.UUID(conv))
