"""Event frames as clients receive them, encoded once with orjson.

A message frame is built in three pieces around the two values only Redis knows (the
sequence number and the time of the append); ``append.lua`` splices them, so the bytes in the
stream are exactly the bytes every socket receives.  Pure functions, no I/O.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass

import orjson

MESSAGE_TYPES = ("incoming", "outgoing", "note", "activity")
AUTHOR_KINDS = ("contact", "member", "system", "api")
STATUSES = ("open", "pending", "resolved")
CHANNELS = ("widget", "api", "email")
MESSAGE_FRAME_PREFIX = b'{"type":"message","message":'
TAG_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
MAX_META_BYTES = 4096
CLIENT_MSG_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def new_message_id() -> str:
    return os.urandom(12).hex()


def new_conversation_id() -> str:
    return str(uuid.uuid4())


_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_uuid(value) -> bool:
    """A UUID in its canonical text form (lowercase, hyphenated), as str(uuid.UUID(...)) gives."""
    return isinstance(value, str) and len(value) == 36 and _UUID_RE.fullmatch(value) is not None


def normalise_tag(raw: str) -> str | None:
    """Lowercase-hyphenated: "VIP Customer" -> "vip-customer"; None when nothing is left."""
    if not isinstance(raw, str):
        return None
    tag = re.sub(r"[^a-z0-9]+", "-", raw.strip().lower()).strip("-")
    return tag if tag and len(tag) <= 64 and TAG_RE.match(tag) else None


@dataclass(frozen=True, slots=True)
class MessageTemplate:
    head: bytes
    mid: bytes
    tail: bytes


def message_template(conversation_id: str, message_id: str, client_msg_id: str | None, type_: str,
                     author_kind: str, author_id: str | None, body: str, meta: dict | None) -> MessageTemplate:
    head = b'{"type":"message","message":{"conversation_id":"' + conversation_id.encode() + b'","seq":'
    mid = (b',"id":"' + message_id.encode() + b'","client_msg_id":' + orjson.dumps(client_msg_id)
           + b',"type":"' + type_.encode() + b'","author_kind":"' + author_kind.encode()
           + b'","author_id":' + orjson.dumps(author_id) + b',"body":' + orjson.dumps(body)
           + b',"meta":' + orjson.dumps(meta or {}) + b',"deleted":false,"created_at":')
    return MessageTemplate(head, mid, b"}}")


def message_object(row) -> dict:
    """A message (PostgreSQL row or parsed frame) in its wire shape."""
    deleted = row["deleted_at"] is not None if "deleted_at" in row else bool(row.get("deleted"))
    created = row["created_at"]
    if not isinstance(created, int):
        created = int(created.timestamp() * 1000)
    return {
        "conversation_id": str(row["conversation_id"]), "seq": row["seq"], "id": row["id"],
        "client_msg_id": row["client_msg_id"], "type": row["type"], "author_kind": row["author_kind"],
        "author_id": row["author_id"], "body": "" if deleted else row["body"],
        "meta": row["meta"] or {}, "deleted": deleted, "created_at": created,
    }


def message_frame(obj: dict) -> bytes:
    return orjson.dumps({"type": "message", "message": obj})


def tombstone(obj: dict, deleted_by: str | None, deleted_at_ms: int) -> bytes:
    """The deleted form of a message: body gone, who and when recorded in its fields."""
    t = dict(obj, body="", deleted=True, deleted_by=deleted_by, deleted_at=deleted_at_ms)
    return orjson.dumps(t)


def frame_message_object(frame: bytes) -> bytes:
    """`{"type":"message","message":{...}}` -> `{...}` without decoding."""
    return frame[len(MESSAGE_FRAME_PREFIX):-1]


def actor_json(kind: str, actor_id: str | None) -> bytes:
    return orjson.dumps({"kind": kind, "id": actor_id})


def ack_frame(ref, conversation_id: str, message_id: str, seq: int, client_msg_id: str | None,
              created_at: int, duplicate: bool) -> bytes:
    return orjson.dumps({"type": "ack", "ref": ref, "conversation_id": conversation_id, "id": message_id,
                         "seq": seq, "client_msg_id": client_msg_id, "created_at": created_at,
                         "duplicate": duplicate})


def error_frame(code: str, message: str, ref=None) -> bytes:
    return orjson.dumps({"type": "error", "code": code, "message": message, "ref": ref})
