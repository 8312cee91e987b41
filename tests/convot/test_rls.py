"""Row-level security: every tenant table, found from the catalogue, admits only its scope."""

import uuid

import asyncpg
import pytest

from convot.db import scoped

GLOBAL_TABLES = {"users", "user_sessions", "recovery_codes", "auth_tokens", "auth_events"}


async def tenant_tables(conn) -> list[str]:
    rows = await conn.fetch(
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'org_id' AND NOT a.attisdropped
           WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1"""
    )
    return [r["relname"] for r in rows]


async def test_every_table_is_tenant_scoped_or_declared_global(owner_db):
    rows = await owner_db.fetch(
        "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r'"
    )
    tenant = set(await tenant_tables(owner_db))
    assert len(tenant) >= 20
    unscoped = {r["relname"] for r in rows} - tenant - GLOBAL_TABLES
    assert unscoped == set(), f"tables with neither org_id nor a place in GLOBAL_TABLES: {unscoped}"


async def test_rls_enabled_and_forced_on_every_tenant_table(owner_db):
    rows = await owner_db.fetch(
        "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = ANY($1::text[])",
        await tenant_tables(owner_db),
    )
    for row in rows:
        assert row["relrowsecurity"] and row["relforcerowsecurity"], row["relname"]


async def test_service_role_owns_nothing_and_cannot_bypass(db):
    async with db.acquire() as conn:
        role = await conn.fetchrow("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        assert not role["rolsuper"] and not role["rolbypassrls"]
        owned = await conn.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND pg_has_role(current_user, c.relowner, 'MEMBER')"
        )
        assert owned == 0


async def _seed(owner_db, org_id: uuid.UUID) -> None:
    """One row in every tenant table for org_id, written under that org's scope."""
    user_id = uuid.uuid4()
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", str(org_id))
        await owner_db.execute("INSERT INTO users (id, email, password_hash) VALUES ($1, $2, 'x')",
                               user_id, f"{user_id}@example.com")
        await owner_db.execute("INSERT INTO organisations (id, name, super_owner_id) VALUES ($1, 'Org', $2)", org_id, user_id)
        await owner_db.execute("INSERT INTO members (org_id, user_id, role) VALUES ($1, $2, 'owner')", org_id, user_id)
        app_id = await owner_db.fetchval(
            "INSERT INTO apps (org_id, public_key, name, identity_secret_enc) VALUES ($1, $2, 'App', '\\x00') RETURNING id",
            org_id, f"app_{uuid.uuid4().hex}")
        contact = await owner_db.fetchval("INSERT INTO contacts (org_id, email) VALUES ($1, 'c@example.com') RETURNING id", org_id)
        await owner_db.execute("INSERT INTO visitors (token_hash, org_id, app_id, contact_id) VALUES ($1, $2, $3, $4)",
                               uuid.uuid4().hex, org_id, app_id, contact)
        conv = await owner_db.fetchval("INSERT INTO conversations (org_id, app_id, contact_id) VALUES ($1, $2, $3) RETURNING id",
                                       org_id, app_id, contact)
        await owner_db.execute(
            "INSERT INTO messages (org_id, conversation_id, seq, id, type, author_kind, body, created_at) "
            "VALUES ($1, $2, 1, $3, 'incoming', 'contact', 'hello', now())", org_id, conv, uuid.uuid4().hex)
        tag = await owner_db.fetchval("INSERT INTO tags (org_id, name) VALUES ($1, 'vip') RETURNING id", org_id)
        await owner_db.execute("INSERT INTO conversation_tags VALUES ($1, $2, $3)", org_id, conv, tag)
        await owner_db.execute("INSERT INTO contact_tags VALUES ($1, $2, $3)", org_id, contact, tag)
        await owner_db.execute("INSERT INTO invites (org_id, email, role, token_hash, expires_at) VALUES ($1, 'i@example.com', 'agent', $2, now())",
                               org_id, uuid.uuid4().hex)
        await owner_db.execute("INSERT INTO notifications (org_id, user_id, kind) VALUES ($1, $2, 'mention')", org_id, user_id)
        await owner_db.execute("INSERT INTO reminders (org_id, conversation_id, user_id, remind_at) VALUES ($1, $2, $3, now())",
                               org_id, conv, user_id)
        await owner_db.execute("INSERT INTO assignment_rules (org_id, position, name) VALUES ($1, 1, 'r')", org_id)
        await owner_db.execute("INSERT INTO read_positions (org_id, user_id, conversation_id, seq) VALUES ($1, $2, $3, 1)",
                               org_id, user_id, conv)
        await owner_db.execute("INSERT INTO auto_assignments (org_id, conversation_id, strategy, outcome) "
                               "VALUES ($1, $2, 'manual', 'manual')", org_id, conv)
        await owner_db.execute("INSERT INTO api_keys (id, org_id, name, secret_hash, scopes) VALUES ($1, $2, 'k', 'h', '{}')",
                               uuid.uuid4().hex, org_id)
        hook = await owner_db.fetchval("INSERT INTO webhooks (org_id, url, secret_enc, events) VALUES ($1, 'https://x', '\\x00', '{}') RETURNING id", org_id)
        await owner_db.execute("INSERT INTO webhook_deliveries (org_id, webhook_id, event, event_id, payload) VALUES ($1, $2, 'e', 'id', '{}')",
                               org_id, hook)
        await owner_db.execute("INSERT INTO audit_log (org_id, actor_kind, action) VALUES ($1, 'system', 'seed')", org_id)
        await owner_db.execute("INSERT INTO exports (org_id) VALUES ($1)", org_id)
        await owner_db.execute("INSERT INTO shopify_connections (org_id, partner_org_id, token_enc, token_last4) VALUES ($1, '1', '\\x00', 'abcd')", org_id)
        await owner_db.execute("INSERT INTO shopify_apps VALUES ($1, 'gid://partners/App/1', 'A')", org_id)
        await owner_db.execute("INSERT INTO shopify_transactions (org_id, id, type, created_at, raw) VALUES ($1, 't1', 'x', now(), '{}')", org_id)
        await owner_db.execute("INSERT INTO shopify_events (org_id, id, type, app_gid, shop_domain, occurred_at, raw) VALUES ($1, 'e1', 'x', 'a', 's', now(), '{}')", org_id)
        await owner_db.execute("INSERT INTO shopify_merchants (org_id, shop_domain, app_gid, status) VALUES ($1, 's', 'a', 'active')", org_id)
        await owner_db.execute("INSERT INTO billing_accounts (org_id) VALUES ($1)", org_id)
        await owner_db.execute("INSERT INTO stripe_events (id, org_id, type, created) VALUES ($1, $2, 'x', 1)", uuid.uuid4().hex, org_id)
        await owner_db.execute("INSERT INTO deleted_conversations (org_id, conversation_id) VALUES ($1, $2)", org_id, uuid.uuid4())
        await owner_db.execute("INSERT INTO contact_merges (org_id, from_contact, into_contact) VALUES ($1, $2, $3)",
                               org_id, uuid.uuid4(), contact)


async def test_each_tenant_table_shows_only_its_organisation(owner_db, db):
    org_a, org_b = uuid.uuid4(), uuid.uuid4()
    await _seed(owner_db, org_a)
    await _seed(owner_db, org_b)
    tables = await tenant_tables(owner_db)
    async with db.acquire() as conn:
        for table in tables:
            # No scope: nothing at all.
            assert await conn.fetchval(f'SELECT count(*) FROM "{table}"') == 0, table
    for org, other in ((org_a, org_b), (org_b, org_a)):
        async with scoped(db, org_id=org) as conn:
            for table in tables:
                orgs = {r["org_id"] for r in await conn.fetch(f'SELECT org_id FROM "{table}"')}
                assert orgs == {org}, f"{table}: saw {orgs}, expected only {org}"


async def test_writes_into_another_organisation_are_refused(owner_db, db):
    org_a, org_b = uuid.uuid4(), uuid.uuid4()
    await _seed(owner_db, org_a)
    await _seed(owner_db, org_b)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with scoped(db, org_id=org_a) as conn:
            await conn.execute("INSERT INTO tags (org_id, name) VALUES ($1, 'sneaky')", org_b)
    async with scoped(db, org_id=org_a) as conn:
        updated = await conn.execute("UPDATE tags SET name = 'renamed' WHERE org_id = $1", org_b)
        assert updated == "UPDATE 0"


async def test_audit_log_is_append_only_for_the_services(owner_db, db):
    org = uuid.uuid4()
    await _seed(owner_db, org)
    for statement in ("UPDATE audit_log SET action = 'forged'", "DELETE FROM audit_log",
                      "UPDATE auth_events SET success = true", "DELETE FROM auth_events"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with scoped(db, org_id=org) as conn:
                await conn.execute(statement)
    async with scoped(db, org_id=org) as conn:
        await conn.execute("INSERT INTO audit_log (org_id, actor_kind, action) VALUES ($1, 'system', 'ok')", org)
        assert await conn.fetchval("SELECT count(*) FROM audit_log") == 2


async def test_schema_migrations_are_invisible_to_the_services(db):
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with db.acquire() as conn:
            await conn.fetch("SELECT * FROM convot_meta.schema_migrations")
