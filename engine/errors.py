"""The engine's error table: every refusal the engine reports has one stable code.

Gateways map these to error frames (same codes); the admin API maps them to HTTP statuses
with ``HTTP_STATUS``.
"""

from __future__ import annotations

ERRORS = {
    # code: (HTTP status, description)
    "not_found": (404, "no such conversation or message in this organisation"),
    "invalid": (422, "a field is missing or has a bad value"),
    "conflict": (409, "the conversation already exists"),
    "unavailable": (503, "a backing store is unavailable; retry with the same client_msg_id"),
    "internal": (500, "unexpected engine error"),
}
HTTP_STATUS = {code: status for code, (status, _) in ERRORS.items()}


class EngineError(Exception):
    def __init__(self, code: str, detail: str = ""):
        if code not in ERRORS:
            raise ValueError(f"unknown engine error code {code!r}")
        super().__init__(f"{code}: {detail or ERRORS[code][1]}")
        self.code = code
        self.detail = detail or ERRORS[code][1]
