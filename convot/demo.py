"""`convot demo`: a demo organisation with an owner, an agent and an app, ready to chat.

Idempotent: run again, it finds the same organisation and app and gives the two accounts new
passwords.  The result is also written to ``<data.dir>/demo.json`` (mode 0600, development data)
so `convot up` can print the login and serve the demo shop page for the demo app.
"""

from __future__ import annotations

import json
import os
import secrets
import uuid

import asyncpg

from convot.config import Config
from convot.crypto import Encryptor, row_aad
from convot.db import _init_connection, set_scope

OWNER_EMAIL = "owner@demo.convot.localhost"
AGENT_EMAIL = "agent@demo.convot.localhost"
ORG_NAME = "Demo Shop Apps"


async def _allow_origin(conn: asyncpg.Connection, app_id, config: Config) -> None:
    """The demo shop is served by the admin API: its origin must be allowed for the demo app."""
    await conn.execute(
        "UPDATE apps SET allowed_origins = array_append(allowed_origins, $2) "
        "WHERE id = $1 AND NOT ($2 = ANY (allowed_origins))",
        app_id, config.admin_api.public_url.rstrip("/"),
    )


async def refresh_demo_origin(config: Config) -> None:
    """Called by every `convot up`: the admin API may now run on another host or port."""
    path = config.data_dir / "demo.json"
    if not path.exists():
        return
    org_id = json.loads(path.read_text())["org_id"]
    conn = await asyncpg.connect(config.database.url)
    try:
        async with conn.transaction():
            await set_scope(conn, org_id=org_id)
            app = await conn.fetchrow("SELECT id FROM apps WHERE org_id = $1 ORDER BY created_at LIMIT 1", org_id)
            if app is not None:
                await _allow_origin(conn, app["id"], config)
    finally:
        await conn.close()


def _password() -> str:
    return "demo-" + secrets.token_urlsafe(12)


async def create_demo(config: Config) -> dict[str, str]:
    from admin_api.passwords import hash_password_sync

    encryptor = Encryptor.from_config(config)
    owner_pw, agent_pw = _password(), _password()
    cost = config.auth.bcrypt_cost
    conn = await asyncpg.connect(config.database.url)
    await _init_connection(conn)
    try:
        async with conn.transaction():
            ids = {}
            for email, password, name in ((OWNER_EMAIL, owner_pw, "Olivia Owner"), (AGENT_EMAIL, agent_pw, "Adam Agent")):
                ids[email] = await conn.fetchval(
                    """INSERT INTO users (email, password_hash, name, email_verified_at) VALUES ($1, $2, $3, now())
                       ON CONFLICT (email) DO UPDATE SET password_hash = EXCLUDED.password_hash,
                           password_changed_at = now()
                       RETURNING id""",
                    email, hash_password_sync(password, cost), name,
                )
            owner_id = ids[OWNER_EMAIL]
            await set_scope(conn, user_id=owner_id)
            org_id = await conn.fetchval(
                "SELECT id FROM organisations WHERE super_owner_id = $1 AND name = $2", owner_id, ORG_NAME
            )
            if org_id is None:
                org_id = uuid.uuid4()
            await set_scope(conn, org_id=org_id)
            await conn.execute(
                "INSERT INTO organisations (id, name, super_owner_id) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
                org_id, ORG_NAME, owner_id,
            )
            for email, role in ((OWNER_EMAIL, "owner"), (AGENT_EMAIL, "agent")):
                await conn.execute(
                    "INSERT INTO members (org_id, user_id, role) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    org_id, ids[email], role,
                )
            app = await conn.fetchrow("SELECT id, public_key FROM apps WHERE org_id = $1 ORDER BY created_at LIMIT 1", org_id)
            if app is None:
                app_id = uuid.uuid4()
                public_key = "app_" + secrets.token_hex(10)
                secret = secrets.token_hex(32)
                blob = encryptor.encrypt(secret.encode(), row_aad("apps", "identity_secret_enc", org_id, app_id))
                origin = config.admin_api.public_url.rstrip("/")
                await conn.execute(
                    """INSERT INTO apps (id, org_id, public_key, name, identity_secret_enc, allowed_origins, settings)
                       VALUES ($1, $2, $3, 'Demo app', $4, $5, $6)""",
                    app_id, org_id, public_key, blob, [origin],
                    {"color": "#5b3cc4", "greeting": "Hi! Ask us anything about the demo app.", "email_prompt": True},
                )
            else:
                public_key = app["public_key"]
                await _allow_origin(conn, app["id"], config)
    finally:
        await conn.close()
    result = {
        "org_id": str(org_id),
        "app_id": public_key,
        "owner": OWNER_EMAIL,
        "owner_pw": owner_pw,
        "agent": AGENT_EMAIL,
        "agent_pw": agent_pw,
    }
    path = config.data_dir / "demo.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(result, fh, indent=2)
    return result
