"""The gateway's error table: every problem a socket can meet has one stable code.

A code either answers one frame with an ``error`` frame (the socket stays open) or closes the
socket with a close code from one of two documented ranges (docs/protocol.md):

* 4000-4099 "reconnect": the client should reconnect (with backoff and jitter), resuming
  from its last sequence numbers; 4003 and 4007 first need a fresh token.
* 4400-4499 "terminal": reconnecting with the same credentials will fail again; the client
  must obtain a new token from the admin API (or stop).
* 1009 (RFC 6455 "message too big"): a frame larger than gateway.max_frame_bytes.

This module is the one boundary where codes become close codes.
"""

from __future__ import annotations

from dataclasses import dataclass

RECONNECT_RANGE = range(4000, 4100)
TERMINAL_RANGE = range(4400, 4500)


@dataclass(frozen=True)
class ErrorSpec:
    code: str
    close_code: int | None     # None: answer with an error frame, keep the socket
    description: str


_TABLE = [
    # Answered with an error frame; the frame is dropped, nothing else is affected.
    ErrorSpec("bad_json", None, "the frame is not a JSON object"),
    ErrorSpec("bad_frame", None, "a field is missing or has the wrong type or value"),
    ErrorSpec("unknown_type", None, "the frame type is not part of the protocol"),
    ErrorSpec("rate_limited", None, "too many frames; this one was dropped, retry later"),
    ErrorSpec("message_too_long", None, "the message body exceeds gateway.max_message_chars"),
    ErrorSpec("not_found", None, "no such conversation or message for this token"),
    ErrorSpec("forbidden", None, "this role may not do that"),
    ErrorSpec("token_mismatch", None, "a refreshed token must name the same organisation, subject and role"),
    ErrorSpec("already_authenticated", None, "the socket is already authenticated"),
    ErrorSpec("unavailable", None, "a backing store is unavailable; retry (sends: same client_msg_id)"),
    ErrorSpec("internal", None, "unexpected error; retry"),
    # Reconnect range.
    ErrorSpec("server_shutdown", 4000, "the gateway is draining (deploy); reconnect and resume"),
    ErrorSpec("slow_consumer", 4001, "the socket did not read fast enough; reconnect and resume"),
    ErrorSpec("server_error", 4002, "unexpected server error; reconnect with backoff"),
    ErrorSpec("token_expired", 4003, "the token expired before it was refreshed; get a new token, reconnect"),
    ErrorSpec("auth_timeout", 4004, "no authenticate frame in time; reconnect"),
    ErrorSpec("backend_unavailable", 4005, "the gateway cannot reach Redis; reconnect with backoff"),
    ErrorSpec("flood", 4006, "far too many frames; reconnect after at least 5 seconds"),
    ErrorSpec("reauthenticate", 4007, "the member's role changed; get a new token, reconnect"),
    # Terminal range.
    ErrorSpec("protocol_violation", 4400, "a frame came in a state that does not allow it"),
    ErrorSpec("auth_failed", 4401, "the token was refused (reason in the close reason)"),
    ErrorSpec("token_revoked", 4402, "the token or the session was revoked"),
    ErrorSpec("access_revoked", 4403, "membership removed, organisation deleted or contact erased"),
    # RFC 6455.
    ErrorSpec("frame_too_large", 1009, "the frame exceeds gateway.max_frame_bytes"),
]

ERRORS: dict[str, ErrorSpec] = {}
for _spec in _TABLE:
    if _spec.code in ERRORS or (_spec.close_code is not None
                                and _spec.close_code in {s.close_code for s in ERRORS.values()}):
        raise RuntimeError(f"duplicate error code or close code: {_spec.code}")
    ERRORS[_spec.code] = _spec

CLOSE_CODES: dict[int, str] = {s.close_code: s.code for s in _TABLE if s.close_code is not None}


class GatewayError(Exception):
    """Raised by the pure core; the I/O layer turns it into an error frame or a close."""

    def __init__(self, code: str, detail: str = ""):
        if code not in ERRORS:
            raise ValueError(f"unknown gateway error code {code!r}")
        super().__init__(code)
        self.code = code
        self.detail = detail or ERRORS[code].description
        self.ref = None       # the frame's ref, when the error answers one frame

    @property
    def close_code(self) -> int | None:
        return ERRORS[self.code].close_code

    @property
    def close_reason(self) -> str:
        """Short, safe text for the close frame (max 123 bytes): the code and a reason code."""
        return (self.code if self.detail == ERRORS[self.code].description else f"{self.code}:{self.detail}")[:120]


def is_reconnect(close_code: int) -> bool:
    return close_code in RECONNECT_RANGE or close_code in (1001, 1006, 1011, 1012, 1013)
