"""Bench tenants: organisations with agents, an app and contacts (and, for steady-chat
--partner-api-hang, a Shopify connection each), written as the table owner."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import asyncpg


@dataclass
class BenchTenant:
    org: str
    app: str
    agents: list[str] = field(default_factory=list)
    contacts: list[str] = field(default_factory=list)


async def seed(owner_url: str, orgs: int, agents_per_org: int, contacts_per_org: list[int]) -> list[BenchTenant]:
    conn = await asyncpg.connect(owner_url)
    out = []
    try:
        for i in range(orgs):
            org, owner = uuid.uuid4(), uuid.uuid4()
            users = [uuid.uuid4() for _ in range(agents_per_org)]
            contacts = [uuid.uuid4() for _ in range(contacts_per_org[i])]
            app = uuid.uuid4()
            async with conn.transaction():
                await conn.execute("SELECT set_config('convot.org_id', $1, true)", str(org))
                await conn.executemany("INSERT INTO users (id, email, password_hash) VALUES ($1, $2, 'x')",
                                       [(u, f"bench-{u}@example.test") for u in [owner, *users]])
                await conn.execute("INSERT INTO organisations (id, name, super_owner_id) VALUES ($1, $2, $3)",
                                   org, f"Bench {i}", owner)
                await conn.executemany("INSERT INTO members (org_id, user_id, role) VALUES ($1, $2, $3)",
                                       [(org, owner, "owner")] + [(org, u, "agent") for u in users])
                await conn.execute("INSERT INTO apps (id, org_id, public_key, name, identity_secret_enc) "
                                   "VALUES ($1, $2, $3, 'Bench', '\\x00')", app, org, f"app_{app.hex}")
                await conn.executemany("INSERT INTO contacts (id, org_id) VALUES ($1, $2)", [(c, org) for c in contacts])
            out.append(BenchTenant(str(org), str(app), [str(u) for u in users], [str(c) for c in contacts]))
    finally:
        await conn.close()
    return out


async def seed_shopify_connections(owner_url: str, encryptor, tenants: list[BenchTenant], partner_org_id: str,
                                   token: str) -> None:
    """A Shopify Partner connection for every tenant, stored as the admin API's connect flow
    stores it (engine/shopify/connections.py: the token AES-256-GCM-encrypted and bound to the
    organisation's row, status active) and due for sync at once."""
    from engine.shopify.connections import token_aad

    conn = await asyncpg.connect(owner_url)
    try:
        for t in tenants:
            async with conn.transaction():
                await conn.execute("SELECT set_config('convot.org_id', $1, true)", t.org)
                await conn.execute(
                    "INSERT INTO shopify_connections (org_id, partner_org_id, token_enc, token_last4, status, "
                    "next_sync_at) VALUES ($1, $2, $3, $4, 'active', now())",
                    uuid.UUID(t.org), partner_org_id, encryptor.encrypt(token.encode(), token_aad(t.org)), token[-4:])
    finally:
        await conn.close()
