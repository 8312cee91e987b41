"""A Shopify connection's life: connect (validated at once, token encrypted), status as shown
to owners (token masked), "sync now", disconnect, and the claim/record steps of a sync run.

Each function is one short transaction in the organisation's scope; none of them holds a
database connection while talking to Shopify.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
import aiohttp
import asyncpg

from convot.db import scoped
from engine.shopify.client import PartnerClient
from engine.shopify.records import format_time

Audit = Callable[[asyncpg.Connection], Awaitable[None]]   # writes the audit row in the same transaction
_PARTNER_ORG_ID = re.compile(r"^[0-9]{1,20}$")
_TOKEN = re.compile(r"^[\x21-\x7e]{8,255}$")   # printable ASCII, no spaces


class ConnectionInputError(ValueError):
    """Refused input; ``code`` is stable (``invalid_partner_org_id``, ``invalid_token``)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def token_aad(org_id: uuid.UUID | str) -> bytes:
    from convot.crypto import row_aad

    return row_aad("shopify_connections", "token_enc", org_id)


def mask_token(last4: str) -> str:
    return "••••••••" + last4


def validate_input(partner_org_id: str, token: str) -> tuple[str, str]:
    partner_org_id = (partner_org_id or "").strip() if isinstance(partner_org_id, str) else ""
    if not _PARTNER_ORG_ID.match(partner_org_id):
        raise ConnectionInputError("invalid_partner_org_id", "the Partner organisation id is the number in your Partner Dashboard URL")
    token = token.strip() if isinstance(token, str) else ""
    if not _TOKEN.match(token):
        raise ConnectionInputError("invalid_token", "the Partner API token is 8 to 255 printable characters")
    return partner_org_id, token


async def connect(pool: asyncpg.Pool, encryptor, session: aiohttp.ClientSession, settings, *, org_id: uuid.UUID,
                  partner_org_id: str, token: str, audit: Audit | None = None) -> dict:
    """Validate with a real query, then store (token encrypted, bound to this organisation's row).

    Raises :class:`ConnectionInputError` or the Partner API's typed error; stores nothing then.
    Reconnecting to the same Partner organisation keeps the sync cursors; another one starts over.
    """
    partner_org_id, token = validate_input(partner_org_id, token)
    client = PartnerClient.from_config(session, settings, partner_org_id=partner_org_id, token=token)
    await client.check()
    token_enc = encryptor.encrypt(token.encode(), token_aad(org_id))
    async with scoped(pool, org_id=org_id) as conn:
        await conn.execute(
            """INSERT INTO shopify_connections (org_id, partner_org_id, token_enc, token_last4, status, next_sync_at)
               VALUES ($1, $2, $3, $4, 'active', now())
               ON CONFLICT (org_id) DO UPDATE SET
                   token_enc = EXCLUDED.token_enc, token_last4 = EXCLUDED.token_last4, status = 'active',
                   consecutive_failures = 0, last_error = NULL, next_sync_at = now(), sync_started_at = NULL,
                   sync_state = CASE WHEN shopify_connections.partner_org_id = EXCLUDED.partner_org_id
                                     THEN shopify_connections.sync_state ELSE '{}'::jsonb END,
                   partner_org_id = EXCLUDED.partner_org_id""",
            org_id, partner_org_id, token_enc, token[-4:])
        if audit is not None:
            await audit(conn)
    return await status(pool, org_id)


async def disconnect(pool: asyncpg.Pool, org_id: uuid.UUID, audit: Audit | None = None) -> bool:
    """Delete the connection and its token. Copied revenue data stays (a reconnect resumes)."""
    async with scoped(pool, org_id=org_id) as conn:
        result = await conn.execute("DELETE FROM shopify_connections WHERE org_id = $1", org_id)
        if result == "DELETE 1" and audit is not None:
            await audit(conn)
    return result == "DELETE 1"


async def request_sync_now(pool: asyncpg.Pool, org_id: uuid.UUID, audit: Audit | None = None) -> bool:
    """Make the connection due now; a stopped one restarts with its failure count cleared."""
    async with scoped(pool, org_id=org_id) as conn:
        result = await conn.execute(
            """UPDATE shopify_connections SET next_sync_at = now(),
                   status = CASE WHEN status = 'stopped' THEN 'active' ELSE status END,
                   consecutive_failures = CASE WHEN status = 'stopped' THEN 0 ELSE consecutive_failures END,
                   last_error = CASE WHEN status = 'stopped' THEN NULL ELSE last_error END
               WHERE org_id = $1""", org_id)
        if result == "UPDATE 1" and audit is not None:
            await audit(conn)
    return result == "UPDATE 1"


async def status(pool: asyncpg.Pool, org_id: uuid.UUID) -> dict | None:
    """What the inbox settings show: never the token, only its last four characters."""
    async with scoped(pool, org_id=org_id) as conn:
        row = await conn.fetchrow(
            """SELECT partner_org_id, token_last4, status, sync_state, consecutive_failures, last_error,
                      last_sync_at, next_sync_at, created_at FROM shopify_connections WHERE org_id = $1""", org_id)
        apps = await conn.fetch("SELECT app_gid, name FROM shopify_apps WHERE org_id = $1 ORDER BY name, app_gid", org_id)
    if row is None:
        return None
    state = row["sync_state"] or {}
    return {
        "partner_org_id": row["partner_org_id"],
        "token": mask_token(row["token_last4"]),
        "status": row["status"],
        "consecutive_failures": row["consecutive_failures"],
        "last_error": row["last_error"],
        "last_sync_at": format_time(row["last_sync_at"]) if row["last_sync_at"] else None,
        "next_sync_at": format_time(row["next_sync_at"]) if row["status"] != "stopped" else None,
        "progress": state.get("progress"),
        "last_result": state.get("last_result"),
        "apps": [{"app_gid": a["app_gid"], "name": a["name"]} for a in apps],
        "connected_at": format_time(row["created_at"]),
    }


@dataclass(frozen=True)
class Claimed:
    org_id: uuid.UUID
    partner_org_id: str
    token_enc: bytes
    sync_state: dict
    consecutive_failures: int


async def due_connections(pool: asyncpg.Pool, limit: int, lease_seconds: int) -> list[uuid.UUID]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT org_id FROM shopify_due_connections($1, $2)", limit, lease_seconds)
    return [r["org_id"] for r in rows]


async def connection_counts(pool: asyncpg.Pool) -> dict[str, int]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT status, connections FROM shopify_connection_counts()")
    return {r["status"]: r["connections"] for r in rows}


async def claim(pool: asyncpg.Pool, org_id: uuid.UUID, lease_seconds: int) -> Claimed | None:
    """Take the connection for one run if it is due (or its previous run's lease expired)."""
    async with scoped(pool, org_id=org_id) as conn:
        row = await conn.fetchrow(
            """UPDATE shopify_connections SET status = 'syncing', sync_started_at = now()
               WHERE org_id = $1 AND ((status = 'active' AND next_sync_at <= now())
                  OR (status = 'syncing' AND sync_started_at < now() - make_interval(secs => $2)))
               RETURNING partner_org_id, token_enc, sync_state, consecutive_failures""", org_id, lease_seconds)
    if row is None:
        return None
    return Claimed(org_id, row["partner_org_id"], bytes(row["token_enc"]), dict(row["sync_state"] or {}),
                   row["consecutive_failures"])


def retry_delay(failures: int, settings) -> float:
    """Seconds before the next attempt after ``failures`` consecutive failed runs."""
    return min(settings.poll_interval, settings.retry_base * (2 ** max(failures - 1, 0)))


async def record_success(pool: asyncpg.Pool, org_id: uuid.UUID, state: dict, settings) -> None:
    async with scoped(pool, org_id=org_id) as conn:
        await conn.execute(
            """UPDATE shopify_connections SET status = 'active', consecutive_failures = 0, last_error = NULL,
                   last_sync_at = now(), next_sync_at = now() + make_interval(secs => $3), sync_started_at = NULL,
                   sync_state = $2
               WHERE org_id = $1 AND status = 'syncing'""", org_id, state, float(settings.poll_interval))


async def record_failure(pool: asyncpg.Pool, org_id: uuid.UUID, state: dict, error: str, failures_before: int,
                         settings) -> str:
    """Count the failure; at ``max_failures`` in a row the connection stops. Returns the new status."""
    failures = failures_before + 1
    new_status = "stopped" if failures >= settings.max_failures else "active"
    async with scoped(pool, org_id=org_id) as conn:
        await conn.execute(
            """UPDATE shopify_connections SET status = $3, consecutive_failures = $4, last_error = $5,
                   next_sync_at = now() + make_interval(secs => $6), sync_started_at = NULL, sync_state = $2
               WHERE org_id = $1 AND status = 'syncing'""",
            org_id, state, new_status, failures, error[:500], retry_delay(failures, settings))
    return new_status
