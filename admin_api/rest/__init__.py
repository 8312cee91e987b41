"""The REST API resources (conversations, messages, contacts, tags) and what they share.

Every route lives under ``/v1/orgs/{org_id}/...`` and serves both the inbox (session cookie,
member permission) and developers (bearer API key, ``api_scope``); see docs/rest-api.md.
Changes to conversations go through the engine (``EngineClient``), so every socket sees them
live and the workers persist them in order.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid

import orjson

from admin_api.call import Call
from admin_api.errors import ApiError
from engine.errors import EngineError

_ENGINE_CODES = {"not_found": "not_found", "invalid": "unprocessable_entity", "conflict": "conflict",
                 "unavailable": "service_unavailable", "internal": "internal_error"}


def engine_error(exc: EngineError) -> ApiError:
    """The engine's error table mapped onto the admin API's, at this one place."""
    code = _ENGINE_CODES[exc.code]
    details = {"reason": exc.detail} if exc.code == "invalid" else {}
    headers = {"Retry-After": "1"} if exc.code == "unavailable" else None
    return ApiError(code, details=details, headers=headers)


def actor(call: Call) -> tuple[str, str]:
    """Who a change is attributed to in the stream (and the audit log)."""
    p = call.principal
    if p.kind == "api_key":
        return ("api", p.api_key_id)
    return ("member", str(p.user_id))


def is_api_key(call: Call) -> bool:
    return call.principal is not None and call.principal.kind == "api_key"


def from_ms(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc)


# ---- cursors: opaque to clients, validated strictly ------------------------------------------

def encode_cursor(created_at: dt.datetime, row_id) -> str:
    raw = orjson.dumps([created_at.isoformat(), str(row_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        created, row_id = orjson.loads(raw)
        when = dt.datetime.fromisoformat(created)
        if when.tzinfo is None:
            raise ValueError("naive time")
        return when, uuid.UUID(row_id)
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
        raise ApiError("unprocessable_entity", details={"field": "cursor", "reason": "is not a cursor of this list"}) \
            from None
