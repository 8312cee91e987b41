"""`convot demo`: a ready-to-chat organisation, idempotent, printed login that works."""

import json

from admin_api.passwords import verify_password_sync
from convot.db import scoped
from convot.demo import AGENT_EMAIL, OWNER_EMAIL, create_demo


async def test_demo_is_complete_and_idempotent(servers, db, tmp_path):
    config = servers.config(data={"dir": str(tmp_path)})
    first = await create_demo(config)
    second = await create_demo(config)
    assert first["org_id"] == second["org_id"] and first["app_id"] == second["app_id"]
    assert first["owner_pw"] != second["owner_pw"]
    assert json.loads((tmp_path / "demo.json").read_text()) == second
    assert (tmp_path / "demo.json").stat().st_mode & 0o077 == 0
    async with db.acquire() as conn:
        hashed = await conn.fetchval("SELECT password_hash FROM users WHERE email = $1", OWNER_EMAIL)
    assert verify_password_sync(second["owner_pw"], hashed)
    assert not verify_password_sync(first["owner_pw"], hashed)
    async with scoped(db, org_id=second["org_id"]) as conn:
        roles = {r["email"]: r["role"] for r in await conn.fetch(
            "SELECT u.email, m.role FROM members m JOIN users u ON u.id = m.user_id")}
        apps = await conn.fetch("SELECT public_key, allowed_origins FROM apps")
    assert roles == {OWNER_EMAIL: "owner", AGENT_EMAIL: "agent"}
    assert [a["public_key"] for a in apps] == [second["app_id"]]
    assert apps[0]["allowed_origins"] == [config.admin_api.public_url.rstrip("/")]


async def test_demo_app_allows_the_current_admin_api_origin(servers, db, tmp_path):
    from convot.demo import refresh_demo_origin

    config = servers.config(data={"dir": str(tmp_path)})
    demo = await create_demo(config)
    moved = config.replace(admin_api={"public_url": "http://127.0.0.1:18080"})
    await refresh_demo_origin(moved)
    await refresh_demo_origin(moved)
    async with scoped(db, org_id=demo["org_id"]) as conn:
        origins = await conn.fetchval("SELECT allowed_origins FROM apps WHERE public_key = $1", demo["app_id"])
    # Other tests may have allowed origins of their own on the shared demo app.
    assert config.admin_api.public_url.rstrip("/") in origins
    assert origins.count("http://127.0.0.1:18080") == 1
