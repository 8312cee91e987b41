"""TOTP (RFC 6238 over RFC 4226 HOTP): HMAC-SHA1, 30-second steps, 6 digits.  Pure.

A code is accepted for the current step and one step either side (clock drift), and only for
a step later than the last one accepted for that user (``users.totp_last_step``), so a code
is accepted once: replaying it, or an older one, fails.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
import urllib.parse

PERIOD = 30
DIGITS = 6
WINDOW = 1
SECRET_BYTES = 20  # 160 bits, as RFC 4226 recommends


def generate_secret() -> bytes:
    return os.urandom(SECRET_BYTES)


def secret_to_base32(secret: bytes) -> str:
    return base64.b32encode(secret).decode().rstrip("=")


def hotp(secret: bytes, counter: int, digits: int = DIGITS) -> str:
    digest = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10 ** digits).zfill(digits)


def step_at(unix_time: float, period: int = PERIOD) -> int:
    return int(unix_time // period)


def totp(secret: bytes, unix_time: float) -> str:
    return hotp(secret, step_at(unix_time))


def normalise_code(code: str) -> str:
    return "".join(ch for ch in code if not ch.isspace())


def accepted_step(secret: bytes, code: str, unix_time: float, last_step: int | None,
                  window: int = WINDOW) -> int | None:
    """The step ``code`` is valid for (within ±window), if later than ``last_step``; else None.

    Every candidate is computed and compared in constant time, so the answer's timing does not
    tell which step matched.
    """
    code = normalise_code(code)
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    now = step_at(unix_time)
    found = None
    for step in range(now - window, now + window + 1):
        if hmac.compare_digest(hotp(secret, step), code) and (last_step is None or step > last_step):
            if found is None:
                found = step
    return found


def provisioning_uri(secret: bytes, account: str, issuer: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads from a QR code."""
    label = urllib.parse.quote(f"{issuer}:{account}", safe="@:")
    query = urllib.parse.urlencode({"secret": secret_to_base32(secret), "issuer": issuer,
                                    "algorithm": "SHA1", "digits": DIGITS, "period": PERIOD})
    return f"otpauth://totp/{label}?{query}"
