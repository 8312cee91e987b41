"""REST: messages of a conversation — history, send as a teammate, delete.

A message sent here goes through the engine like one typed in the inbox: it gets the
conversation's next sequence number, every socket of the conversation sees it live, and a
retry with the same ``client_msg_id`` returns the first acknowledgement instead of a second
message.  Deletion follows PRODUCT.md: owners and admins may delete any message, agents only
their own outgoing ones; an API key acts for the organisation (like an admin).
"""

from __future__ import annotations

import uuid

import orjson

from admin_api import keys
from admin_api.call import Call
from admin_api.errors import ApiError
from admin_api.rest import actor, engine_error, from_ms, is_api_key
from admin_api.routing import RouteTable
from admin_api.schemas import Array, Boolean, Choice, DateTime, Integer, Nested, Object, Schema, String, Uuid
from engine.errors import EngineError
from engine.events import CLIENT_MSG_ID_RE, MESSAGE_TYPES

routes = RouteTable(tag="messages")


class Message(Schema):
    conversation_id = Uuid()
    seq = Integer(description="position in the conversation's total order")
    id = String()
    client_msg_id = String(nullable=True)
    type = Choice(*MESSAGE_TYPES)
    author_kind = Choice("contact", "member", "system", "api")
    author_id = String(nullable=True)
    body = String(description="empty when deleted")
    meta = Object()
    deleted = Boolean()
    created_at = DateTime()


class MessagePage(Schema):
    items = Array(Nested(Message), max_items=200, description="oldest first")
    has_more = Boolean(description="older messages exist: pass next_before_seq as before_seq")
    next_before_seq = Integer(nullable=True)


class MessageQuery(Schema):
    before_seq = Integer(minimum=1, required=False, description="only messages with a smaller seq (older)")
    limit = Integer(minimum=1, maximum=200, default=50)


class MessageSend(Schema):
    body = String(min_length=1, max_length=100000, strip=False, example="Your refund is on its way.")
    type = Choice("outgoing", "note", default="outgoing", description="note: private, never shown to the contact")
    author_id = Uuid(required=False, description="API keys: the teammate to send as (a member); "
                                                 "without it the message is from the app")
    client_msg_id = String(pattern=CLIENT_MSG_ID_RE.pattern, required=False,
                           description="idempotency key: a retry with the same id returns the first message")


class MessageAck(Schema):
    conversation_id = Uuid()
    id = String()
    seq = Integer()
    client_msg_id = String(nullable=True)
    created_at = DateTime()
    duplicate = Boolean(description="true when client_msg_id was already used: this is the first message")


def _message(obj: dict) -> Message:
    return Message(conversation_id=obj["conversation_id"], seq=obj["seq"], id=obj["id"],
                   client_msg_id=obj.get("client_msg_id"), type=obj["type"], author_kind=obj["author_kind"],
                   author_id=obj.get("author_id"), body=obj.get("body", ""), meta=obj.get("meta") or {},
                   deleted=bool(obj.get("deleted")), created_at=from_ms(obj["created_at"]))


@routes.route("GET", "/v1/orgs/{org_id}/conversations/{conversation_id}/messages", permission="conversations.read",
              api_scope="messages:read", query=MessageQuery, response=MessagePage,
              summary="Messages of a conversation, oldest first, paged backwards with before_seq")
async def list_messages(call: Call) -> MessagePage:
    q = call.query
    try:
        page, more = await call.app[keys.ENGINE].history(
            str(call.org_id), str(call.path["conversation_id"]), before_seq=q.before_seq if q.is_set("before_seq")
            else None, limit=q.limit)
    except EngineError as exc:
        raise engine_error(exc) from None
    items = [_message(orjson.loads(raw)) for raw in page]
    return MessagePage(items=items, has_more=more, next_before_seq=items[0].seq if more and items else None)


async def send(call: Call, conversation_id: uuid.UUID, message: MessageSend) -> MessageAck:
    """Send as a teammate: the signed-in member, or for an API key the named member or the app."""
    author_kind, author_id = "member", str(call.user_id) if call.user_id else None
    if message.is_set("author_id"):
        if not is_api_key(call):
            if message.author_id != call.user_id:
                raise ApiError("forbidden", "You can only send as yourself.")
        else:
            async with call.db() as conn:
                member = await conn.fetchval("SELECT true FROM members WHERE org_id = $1 AND user_id = $2",
                                             call.org_id, message.author_id)
            if not member:
                raise ApiError("unprocessable_entity", details={"field": "author_id", "reason": "is not a member"})
            author_id = str(message.author_id)
    elif is_api_key(call):
        author_kind, author_id = "api", call.principal.api_key_id
    if len(message.body) > call.config.gateway.max_message_chars:
        raise ApiError("unprocessable_entity", details={
            "field": "body", "reason": f"must be at most {call.config.gateway.max_message_chars} characters"})
    try:
        ack = await call.app[keys.ENGINE].send_message(
            str(call.org_id), str(conversation_id), type=message.type, author_kind=author_kind, author_id=author_id,
            body=message.body, client_msg_id=message.client_msg_id if message.is_set("client_msg_id") else None)
    except EngineError as exc:
        raise engine_error(exc) from None
    return MessageAck(conversation_id=uuid.UUID(ack.conversation_id), id=ack.id, seq=ack.seq,
                      client_msg_id=ack.client_msg_id, created_at=from_ms(ack.created_at), duplicate=ack.duplicate)


@routes.route("POST", "/v1/orgs/{org_id}/conversations/{conversation_id}/messages", permission="conversations.write",
              api_scope="messages:write", body=MessageSend, response=MessageAck, status=201,
              summary="Send a message as a teammate (live on every socket of the conversation)")
async def send_message(call: Call) -> MessageAck:
    return await send(call, call.path["conversation_id"], call.body)


def may_delete(call: Call, message: dict) -> bool:
    """PRODUCT.md: owners/admins any message, agents only their own outgoing ones; API keys any."""
    if is_api_key(call):
        return True
    if call.member.role in ("owner", "admin"):
        return True
    return message["type"] == "outgoing" and message["author_kind"] == "member" \
        and message["author_id"] == str(call.user_id)


@routes.route("DELETE", "/v1/orgs/{org_id}/conversations/{conversation_id}/messages/{seq}",
              permission="conversations.write", api_scope="messages:write", status=204,
              params={"seq": Integer(minimum=1)},
              summary="Delete a message", description="Owners and admins: any message; agents: their own outgoing "
                                                      "messages. The widget shows the deletion live.")
async def delete_message(call: Call) -> None:
    def authorize(message: dict) -> None:
        if not may_delete(call, message):
            raise ApiError("forbidden", "Agents may delete only their own replies.")

    try:
        await call.app[keys.ENGINE].delete_message(str(call.org_id), str(call.path["conversation_id"]),
                                                   call.path["seq"], actor=actor(call), authorize=authorize)
    except EngineError as exc:
        raise engine_error(exc) from None
