"""PostgreSQL access shared by every service.

All tenant work goes through :func:`scoped`: one transaction with the request's scope set as
transaction-local settings, which the row-level security policies of the schema read.  Code
never builds SQL from values: every value is a ``$n`` parameter.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import orjson

SCOPE_KEYS = ("org_id", "user_id", "app_key", "api_key_id", "invite_hash", "stripe_customer")


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(
            typ, encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog"
        )


async def create_pool(url: str, *, min_size: int = 2, max_size: int = 10, command_timeout: float = 30.0) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, command_timeout=command_timeout, init=_init_connection,
    )


async def create_pool_from_config(config) -> asyncpg.Pool:
    db = config.database
    return await create_pool(db.url, min_size=db.pool_min, max_size=db.pool_max, command_timeout=db.command_timeout)


async def set_scope(conn: asyncpg.Connection, **scope: object) -> None:
    """Set transaction-local scope settings (inside a transaction)."""
    names, values = [], []
    for key, value in scope.items():
        if key not in SCOPE_KEYS:
            raise ValueError(f"unknown scope {key!r}")
        if value is None:
            continue
        names.append("convot." + key)
        values.append(str(value))
    if names:
        await conn.execute(
            "SELECT set_config(n, v, true) FROM unnest($1::text[], $2::text[]) AS s(n, v)", names, values
        )


@asynccontextmanager
async def scoped(pool: asyncpg.Pool, **scope: object) -> AsyncIterator[asyncpg.Connection]:
    """A connection in a transaction whose row-level-security scope is ``scope``.

    ``scoped(pool, org_id=org)`` is the normal tenant scope; the other keys serve the few
    lookups that happen before the tenant is known (see the policies in the schema).
    """
    async with pool.acquire() as conn:
        async with conn.transaction():
            await set_scope(conn, **scope)
            yield conn


def new_id() -> uuid.UUID:
    return uuid.uuid4()
