"""Organisation export against real PostgreSQL: the archive holds every conversation, message,
contact and member of the organisation, nothing of another, and no secret."""

import asyncio
import uuid
import zipfile

import pytest

from convot.db import scoped
from engine import export
from engine.client import EngineClient
from tests.engine.seed import seed_tenant
from tests.engine.test_erasure import persist_everything


@pytest.fixture
async def engine(config, db):
    client = EngineClient(config, pool=db)
    await client.start()
    yield client
    await client.close()


async def _populate(engine, owner_db, t, tag: str):
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", t.org)
        await owner_db.execute("UPDATE contacts SET email = $2 || '-' || id || '@example.com', name = $2 "
                               "WHERE org_id = $1", uuid.UUID(t.org), tag)
        await owner_db.execute("UPDATE apps SET identity_secret_enc = $2 WHERE org_id = $1", uuid.UUID(t.org),
                               b"SECRET-" + tag.encode())
        await owner_db.execute("INSERT INTO api_keys (id, org_id, name, secret_hash, scopes) VALUES ($1, $2, 'k', $3, "
                               "'{conversations:read}')", uuid.uuid4().hex[:16], uuid.UUID(t.org), "HASH-" + tag)
        await owner_db.execute("INSERT INTO visitors (token_hash, org_id, app_id, contact_id) VALUES ($1, $2, $3, $4)",
                               "VISITOR-" + tag, uuid.UUID(t.org), uuid.UUID(t.app), uuid.UUID(t.contacts[0]))
    convs = []
    for i, contact in enumerate(t.contacts):
        conv = (await engine.start_conversation(t.org, contact, t.app, body=f"{tag} question {i}")).conversation_id
        await engine.send_message(t.org, conv, type="outgoing", author_kind="member", author_id=t.agents[0],
                                  body=f"{tag} answer {i}")
        convs.append(conv)
    await engine.update_conversation(t.org, convs[0], add_tags=["vip"], actor=("member", t.agents[0]))
    return convs


async def test_archive_holds_everything_of_the_organisation_and_nothing_else(config, db, owner_db, redis_client,
                                                                             engine, tmp_path):
    cfg = config.replace(data_rights={"export_dir": str(tmp_path)})
    a, b = await seed_tenant(owner_db), await seed_tenant(owner_db)
    convs_a = await _populate(engine, owner_db, a, "alpha")
    await _populate(engine, owner_db, b, "bravo")
    await persist_everything(cfg, redis_client, db)
    async with scoped(db, org_id=a.org) as conn:
        export_id = await conn.fetchval("INSERT INTO exports (org_id, requested_by) VALUES ($1, $2) RETURNING id",
                                        uuid.UUID(a.org), uuid.UUID(a.owner))
    assert await export.run_one(cfg, db, uuid.UUID(a.org)) == export_id
    assert await export.run_one(cfg, db, uuid.UUID(a.org)) is None   # nothing left to do

    async with scoped(db, org_id=a.org) as conn:
        row = await conn.fetchrow("SELECT * FROM exports WHERE id = $1", export_id)
    assert row["status"] == "done" and row["expires_at"] > row["finished_at"]
    path = tmp_path / a.org / f"{export_id}.zip"
    assert row["file_path"] == str(path) and path.stat().st_size == row["size_bytes"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert not list(tmp_path.rglob("*.part"))

    manifest = export.read_manifest(path)
    assert manifest["format"] == "convot-export" and manifest["org_id"] == a.org
    assert {f["entity"] for f in manifest["files"]} == set(export.ENTITIES)
    assert row["counts"] == {f["entity"]: f["rows"] for f in manifest["files"]}

    conversations = export.read_entity(path, "conversations")
    assert sorted(c["id"] for c in conversations) == sorted(convs_a)
    assert next(c for c in conversations if c["id"] == convs_a[0])["tags"] == ["vip"]
    messages = export.read_entity(path, "messages")
    assert sorted(m["body"] for m in messages) == sorted(
        [f"alpha question {i}" for i in range(3)] + [f"alpha answer {i}" for i in range(3)])
    contacts = export.read_entity(path, "contacts")
    assert sorted(c["id"] for c in contacts) == sorted(a.contacts)
    assert all(c["name"] == "alpha" for c in contacts)
    members = export.read_entity(path, "members")
    assert sorted(m["user_id"] for m in members) == sorted([a.owner, *a.agents, *a.admins])
    assert all(m["email"].endswith("@example.test") for m in members)
    assert export.read_entity(path, "organisation")[0]["id"] == a.org

    raw = b"".join(zipfile.ZipFile(path).read(n) for n in zipfile.ZipFile(path).namelist())
    for foreign in [b.org, *b.contacts, *b.agents, "bravo"]:
        assert foreign.encode() not in raw, foreign
    for secret in (b"SECRET-alpha", b"HASH-alpha", b"VISITOR-alpha"):
        assert secret not in raw
    async with scoped(db, org_id=a.org) as conn:
        audit = await conn.fetchval("SELECT count(*) FROM audit_log WHERE org_id = $1 AND action = 'export.completed'",
                                    uuid.UUID(a.org))
    assert audit == 1


async def test_export_loop_finds_pending_work_and_expires_archives(config, db, owner_db, tmp_path):
    cfg = config.replace(data_rights={"export_dir": str(tmp_path), "export_retention": 1, "poll_interval": 0.05})
    t = await seed_tenant(owner_db)
    async with scoped(db, org_id=t.org) as conn:
        export_id = await conn.fetchval("INSERT INTO exports (org_id) VALUES ($1) RETURNING id", uuid.UUID(t.org))
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(export.run_exports(cfg, db, stop))
    try:
        for _ in range(400):
            async with scoped(db, org_id=t.org) as conn:
                row = await conn.fetchrow("SELECT status, file_path, expires_at FROM exports WHERE id = $1", export_id)
            if row["status"] == "done" and row["file_path"] is None:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    assert row["status"] == "done" and row["file_path"] is None, "the archive was built, then expired"
    assert not list((tmp_path / t.org).glob("*.zip"))


async def test_a_failing_export_is_retried_then_marked_failed(config, db, owner_db, tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the export folder should be")
    cfg = config.replace(data_rights={"export_dir": str(blocked)})
    t = await seed_tenant(owner_db)
    async with scoped(db, org_id=t.org) as conn:
        export_id = await conn.fetchval("INSERT INTO exports (org_id) VALUES ($1) RETURNING id", uuid.UUID(t.org))
    statuses = []
    for _ in range(export.MAX_ATTEMPTS):
        assert await export.run_one(cfg, db, uuid.UUID(t.org)) == export_id
        async with scoped(db, org_id=t.org) as conn:
            statuses.append(await conn.fetchval("SELECT status FROM exports WHERE id = $1", export_id))
    assert statuses == ["pending"] * (export.MAX_ATTEMPTS - 1) + ["failed"]
    assert await export.run_one(cfg, db, uuid.UUID(t.org)) is None
