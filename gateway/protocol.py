"""The socket protocol's pure core: frames in, typed requests out; no sockets, no I/O.

Every client frame is a JSON object with a ``type`` (docs/protocol.md).  ``parse()`` turns
the raw text into one of the request classes below or raises :class:`GatewayError` with a
stable code (``bad_json``, ``bad_frame``, ``unknown_type``, ``message_too_long``), carrying
the frame's ``ref`` when it could be read so the client can match the error to its frame.
Also here: the per-socket token bucket, the connection state machine, and the server-side
WebSocket frame header (server frames are unmasked, so one frame's bytes serve every socket).
"""

from __future__ import annotations

import enum
import struct
import time
from dataclasses import dataclass

import orjson

from engine.events import CLIENT_MSG_ID_RE, MAX_META_BYTES, STATUSES, is_uuid
from gateway.errors import GatewayError

MAX_RESUME_CONVERSATIONS = 200
MAX_TAGS = 50
MAX_REF_CHARS = 64
PRESENCE_STATES = ("online", "busy", "offline")


# ---- requests -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Authenticate:
    token: str
    ref: object = None


@dataclass(frozen=True, slots=True)
class Send:
    conversation_id: str | None      # None: a shopper starts a new conversation
    client_msg_id: str
    body: str
    kind: str                        # "reply" | "note" (members only)
    meta: dict | None
    ref: object = None


@dataclass(frozen=True, slots=True)
class Typing:
    conversation_id: str
    active: bool
    note: bool = False               # a member typing a private note: not shown to the shopper
    ref: object = None


@dataclass(frozen=True, slots=True)
class Read:
    conversation_id: str
    seq: int
    ref: object = None


@dataclass(frozen=True, slots=True)
class Presence:
    state: str
    ref: object = None


@dataclass(frozen=True, slots=True)
class Resume:
    conversations: dict[str, int]
    ref: object = None


@dataclass(frozen=True, slots=True)
class History:
    conversation_id: str
    before_seq: int | None
    limit: int
    ref: object = None


_KEEP = "keep"


@dataclass(frozen=True, slots=True)
class UpdateConversation:
    conversation_id: str
    status: str | None
    assignee_id: object              # _KEEP, None (unassign) or a uuid
    tags: tuple[str, ...] | None
    add_tags: tuple[str, ...]
    remove_tags: tuple[str, ...]
    delete: bool
    ref: object = None

    @property
    def keeps_assignee(self) -> bool:
        return self.assignee_id == _KEEP


@dataclass(frozen=True, slots=True)
class DeleteMessage:
    conversation_id: str
    seq: int
    ref: object = None


@dataclass(frozen=True, slots=True)
class RefreshToken:
    token: str
    ref: object = None


@dataclass(frozen=True, slots=True)
class Ping:
    ref: object = None


# ---- parsing ------------------------------------------------------------------------------

def _bad(field: str, ref) -> GatewayError:
    err = GatewayError("bad_frame", f"field {field}")
    err.ref = ref
    return err


def _ref(raw: dict):
    ref = raw.get("ref")
    if ref is None:
        return None
    if isinstance(ref, str) and len(ref) <= MAX_REF_CHARS:
        return ref
    if isinstance(ref, int) and not isinstance(ref, bool) and -(2 ** 53) < ref < 2 ** 53:
        return ref
    raise _bad("ref", None)


def _conv(raw: dict, ref, required: bool = True) -> str | None:
    value = raw.get("conversation_id")
    if value is None and not required:
        return None
    if not is_uuid(value):
        raise _bad("conversation_id", ref)
    return value


def _int(raw: dict, field: str, ref, *, lo: int = 0, hi: int = 2 ** 53, default=None, required=True) -> int:
    value = raw.get(field, default)
    if value is None and not required:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise _bad(field, ref)
    return value


def _tags(raw: dict, field: str, ref) -> tuple[str, ...] | None:
    value = raw.get(field)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_TAGS or not all(isinstance(t, str) and 0 < len(t) <= 64 for t in value):
        raise _bad(field, ref)
    return tuple(value)


def _p_authenticate(raw, ref, limits):
    token = raw.get("token")
    if not isinstance(token, str) or not token or len(token) > 4096:
        raise _bad("token", ref)
    return Authenticate(token, ref)


def _p_send(raw, ref, limits):
    conv = _conv(raw, ref, required=False)
    cmid = raw.get("client_msg_id")
    if not isinstance(cmid, str) or not CLIENT_MSG_ID_RE.match(cmid):
        raise _bad("client_msg_id", ref)
    body = raw.get("body")
    if not isinstance(body, str) or not body.strip():
        raise _bad("body", ref)
    if len(body) > limits.max_message_chars:
        err = GatewayError("message_too_long")
        err.ref = ref
        raise err
    kind = raw.get("kind", "reply")
    if kind not in ("reply", "note"):
        raise _bad("kind", ref)
    meta = raw.get("meta")
    if meta is not None and (not isinstance(meta, dict) or len(orjson.dumps(meta)) > MAX_META_BYTES):
        raise _bad("meta", ref)
    return Send(conv, cmid, body, kind, meta, ref)


def _p_typing(raw, ref, limits):
    active = raw.get("active", True)
    if not isinstance(active, bool):
        raise _bad("active", ref)
    note = raw.get("note", False)
    if not isinstance(note, bool):
        raise _bad("note", ref)
    return Typing(_conv(raw, ref), active, note, ref)


def _p_read(raw, ref, limits):
    return Read(_conv(raw, ref), _int(raw, "seq", ref), ref)


def _p_presence(raw, ref, limits):
    state = raw.get("state")
    if state not in PRESENCE_STATES:
        raise _bad("state", ref)
    return Presence(state, ref)


def _p_resume(raw, ref, limits):
    convs = raw.get("conversations")
    if not isinstance(convs, dict) or len(convs) > MAX_RESUME_CONVERSATIONS:
        raise _bad("conversations", ref)
    for conv, seq in convs.items():
        if not is_uuid(conv) or not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2 ** 53:
            raise _bad("conversations", ref)
    return Resume(dict(convs), ref)


def _p_history(raw, ref, limits):
    return History(_conv(raw, ref), _int(raw, "before_seq", ref, lo=1, required=False),
                   _int(raw, "limit", ref, lo=1, hi=200, default=50, required=False), ref)


def _p_update(raw, ref, limits):
    status = raw.get("status")
    if status is not None and status not in STATUSES:
        raise _bad("status", ref)
    if "assignee_id" in raw:
        assignee = raw["assignee_id"]
        if assignee is not None and not is_uuid(assignee):
            raise _bad("assignee_id", ref)
    else:
        assignee = _KEEP
    delete = raw.get("delete", False)
    if not isinstance(delete, bool):
        raise _bad("delete", ref)
    return UpdateConversation(_conv(raw, ref), status, assignee, _tags(raw, "tags", ref),
                              _tags(raw, "add_tags", ref) or (), _tags(raw, "remove_tags", ref) or (), delete, ref)


def _p_delete_message(raw, ref, limits):
    return DeleteMessage(_conv(raw, ref), _int(raw, "seq", ref, lo=1), ref)


def _p_refresh(raw, ref, limits):
    token = raw.get("token")
    if not isinstance(token, str) or not token or len(token) > 4096:
        raise _bad("token", ref)
    return RefreshToken(token, ref)


def _p_ping(raw, ref, limits):
    return Ping(ref)


PARSERS = {
    "authenticate": _p_authenticate,
    "send": _p_send,
    "typing": _p_typing,
    "read": _p_read,
    "presence": _p_presence,
    "resume": _p_resume,
    "history": _p_history,
    "conversation.update": _p_update,
    "message.delete": _p_delete_message,
    "token.refresh": _p_refresh,
    "ping": _p_ping,
}


@dataclass(frozen=True)
class Limits:
    max_message_chars: int = 8000


def parse(data: str | bytes, limits: Limits) -> object:
    """One client frame -> a request object, or GatewayError (with ``.ref`` when known)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        # Binary frames are not part of the protocol, but their bytes may be valid JSON text.
        data = bytes(data)
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError:
        err = GatewayError("bad_json")
        err.ref = None
        raise err from None
    if not isinstance(raw, dict):
        err = GatewayError("bad_json")
        err.ref = None
        raise err
    ref = _ref(raw)
    kind = raw.get("type")
    parser = PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        err = GatewayError("unknown_type")
        err.ref = ref
        raise err
    return parser(raw, ref, limits)


# ---- rate limiting -------------------------------------------------------------------------

class TokenBucket:
    """``rate`` frames per second on average, ``burst`` at once.  ``take()`` is O(1)."""

    __slots__ = ("rate", "burst", "tokens", "stamp", "clock", "refused")

    def __init__(self, rate: float, burst: int, clock=time.monotonic):
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.clock = clock
        self.stamp = clock()
        self.refused = 0          # consecutive refusals: a flood closes the socket

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            self.refused = 0
            return True
        self.refused += 1
        return False

    @property
    def flooding(self) -> bool:
        """Refused as many frames in a row as the burst allows: the client ignores the errors."""
        return self.refused >= self.burst


# ---- connection state machine --------------------------------------------------------------

class ConnState(enum.Enum):
    AUTHENTICATING = "authenticating"
    READY = "ready"
    DRAINING = "draining"
    CLOSED = "closed"


_ALLOWED = {
    ConnState.AUTHENTICATING: {ConnState.READY, ConnState.CLOSED, ConnState.DRAINING},
    ConnState.READY: {ConnState.DRAINING, ConnState.CLOSED},
    ConnState.DRAINING: {ConnState.CLOSED},
    ConnState.CLOSED: set(),
}


class IllegalTransition(RuntimeError):
    pass


class StateMachine:
    __slots__ = ("state",)

    def __init__(self):
        self.state = ConnState.AUTHENTICATING

    def to(self, new: ConnState) -> None:
        if new not in _ALLOWED[self.state]:
            raise IllegalTransition(f"{self.state.value} -> {new.value}")
        self.state = new

    def accepts(self, request) -> None:
        """Which requests each state admits; anything else is a protocol violation."""
        if self.state is ConnState.AUTHENTICATING:
            if not isinstance(request, Authenticate):
                raise GatewayError("protocol_violation", "authenticate first")
        elif self.state is ConnState.READY or self.state is ConnState.DRAINING:
            # While draining, frames still in flight are served; the close comes after.
            if isinstance(request, Authenticate):
                raise GatewayError("already_authenticated")
        else:
            raise GatewayError("protocol_violation", "connection is closed")


# ---- server frames ---------------------------------------------------------------------------

def text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame (RFC 6455 5.2) carrying ``payload``."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload
