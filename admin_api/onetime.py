"""Single-use expiring tokens (``auth_tokens``): email verification, password reset, email change.

The token (32 random bytes, URL-safe) goes to the user by mail; the database keeps only its
SHA-256.  Spending is one atomic UPDATE, so a token works once even under concurrent use.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import uuid

import asyncpg

TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def new_token() -> tuple[str, str]:
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def well_formed(token: str) -> bool:
    return bool(TOKEN_SHAPE.match(token))


async def create(conn: asyncpg.Connection, user_id: uuid.UUID, purpose: str, ttl_seconds: int,
                 payload: dict | None = None) -> str:
    token, digest = new_token()
    await conn.execute(
        "INSERT INTO auth_tokens (token_hash, user_id, purpose, payload, expires_at) VALUES ($1, $2, $3, $4, $5)",
        digest, user_id, purpose, payload or {}, dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=ttl_seconds))
    return token


async def spend(conn: asyncpg.Connection, token: str, purpose: str) -> asyncpg.Record | None:
    """Mark the token used and answer its row, or None if unknown, expired, used or another purpose."""
    if not well_formed(token):
        return None
    return await conn.fetchrow(
        """UPDATE auth_tokens SET used_at = now()
           WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()
           RETURNING user_id, payload""", token_hash(token), purpose)


async def spend_all(conn: asyncpg.Connection, user_id: uuid.UUID, purpose: str) -> None:
    """Spend every other outstanding token of this purpose (after one of them was used)."""
    await conn.execute("UPDATE auth_tokens SET used_at = now() WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
                       user_id, purpose)
