"""Erasure against real PostgreSQL and Redis: a contact, then a whole organisation, leave no
row, stream entry or conversation key behind, and nothing comes back afterwards."""

import uuid

import orjson
import pytest

from convot.db import scoped
from engine import erasure, keys
from engine import webhooks as wh
from engine.client import EngineClient
from engine.errors import EngineError
from engine.worker import Worker
from tests.engine.seed import seed_tenant


@pytest.fixture
async def engine(config, db):
    client = EngineClient(config, pool=db)
    await client.start()
    yield client
    await client.close()


async def persist_everything(config, redis_client, db):
    worker = Worker(config, redis=redis_client, pool=db, consumer=f"test-{uuid.uuid4().hex[:6]}")
    await worker.setup()
    while await worker.step():
        pass


async def stream_entries(redis_client, config, org, *, dead=False):
    shard = keys.shard_of(org, config.engine.shards)
    key = keys.dead_letters(shard) if dead else keys.stream(shard)
    return [f for _, f in await redis_client.xrange(key) if f.get(b"o", b"").decode() == org]


async def rows(owner_db, org, sql, *args):
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", str(org))
        return await owner_db.fetch(sql, *args)


async def test_erasing_a_contact_leaves_nothing_of_theirs(config, db, owner_db, redis_client, engine):
    t = await seed_tenant(owner_db)
    victim, other = t.contacts[0], t.contacts[1]
    agent = t.agents[0]
    org = uuid.UUID(t.org)
    hook, _ = await _webhook(owner_db, config, t.org)
    async with scoped(db, org_id=t.org) as conn:
        await conn.execute("INSERT INTO visitors (token_hash, org_id, app_id, contact_id) VALUES ($1, $2, $3, $4)",
                           "h-" + uuid.uuid4().hex, org, uuid.UUID(t.app), uuid.UUID(victim))
        await conn.execute("UPDATE contacts SET email = 'victim@example.com', name = 'Victim' WHERE id = $1",
                           uuid.UUID(victim))
    # an older, persisted conversation, and a newer one that only Redis knows
    old = (await engine.start_conversation(t.org, victim, t.app, body="my address is 1 Main St",
                                           client_msg_id="v-1")).conversation_id
    await engine.send_message(t.org, old, type="outgoing", author_kind="member", author_id=agent, body="noted")
    await engine.delete_message(t.org, old, 2, actor=("member", agent))
    keep = (await engine.start_conversation(t.org, other, t.app, body="unrelated")).conversation_id
    await persist_everything(config, redis_client, db)
    fresh = (await engine.start_conversation(t.org, victim, t.app, body="call me on 555-0100")).conversation_id
    async with scoped(db, org_id=t.org) as conn:
        await wh.enqueue(conn, t.org, [wh.Event(t.org, "message.received", "ev_" + uuid.uuid4().hex, victim,
                                                {"body": "pending about the victim"})])
    assert len(await rows(owner_db, org, "SELECT 1 FROM webhook_deliveries WHERE contact_id = $1",
                          uuid.UUID(victim))) == 1

    before = await stream_entries(redis_client, config, t.org)
    assert {f[b"c"].decode() for f in before if f[b"k"].decode() == victim} == {old, fresh}
    assert await redis_client.exists(keys.meta(keys.shard_of(t.org, config.engine.shards), fresh))
    published = []

    async def control(event):
        published.append(event)
        await engine.publish_control(event)

    report = await erasure.erase_contact(config, db, redis_client, t.org, victim, control=control)
    assert report is not None and {old, fresh} <= report.conversations and report.rows == 1
    assert published == [{"kind": "contact_erased", "org": t.org, "contact": victim}]
    assert await redis_client.get(keys.revoked_subject(t.org, victim)) is not None

    # PostgreSQL: nothing of theirs
    v = uuid.UUID(victim)
    assert await rows(owner_db, org, "SELECT 1 FROM contacts WHERE id = $1", v) == []
    assert await rows(owner_db, org, "SELECT 1 FROM visitors WHERE contact_id = $1", v) == []
    assert await rows(owner_db, org, "SELECT 1 FROM conversations WHERE contact_id = $1 OR id = ANY($2::uuid[])",
                      v, [uuid.UUID(old), uuid.UUID(fresh)]) == []
    assert await rows(owner_db, org, "SELECT 1 FROM messages WHERE conversation_id = ANY($1::uuid[])",
                      [uuid.UUID(old), uuid.UUID(fresh)]) == []
    assert await rows(owner_db, org, "SELECT 1 FROM webhook_deliveries WHERE contact_id = $1", v) == []
    # Redis: no stream entry, no conversation key
    assert not any(f[b"k"].decode() == victim or f[b"c"].decode() in (old, fresh)
                   for f in await stream_entries(redis_client, config, t.org))
    shard = keys.shard_of(t.org, config.engine.shards)
    for conv in (old, fresh):
        assert not await redis_client.exists(keys.meta(shard, conv), keys.recent(shard, conv))
    assert not [k async for k in redis_client.scan_iter(match=f"cv:{{{shard}}}:i:{old}:*")]
    assert not [k async for k in redis_client.scan_iter(match=f"cv:{{{shard}}}:i:n:{victim}:*")]
    # the closed conversations refuse writes and cannot be hydrated back
    with pytest.raises(EngineError) as err:
        await engine.send_message(t.org, old, type="outgoing", author_kind="member", author_id=agent, body="hello?")
    assert err.value.code == "not_found"
    # workers running afterwards bring nothing back
    await persist_everything(config, redis_client, db)
    assert await rows(owner_db, org, "SELECT 1 FROM conversations WHERE id = ANY($1::uuid[])",
                      [uuid.UUID(old), uuid.UUID(fresh)]) == []
    # the other contact is untouched
    assert len(await rows(owner_db, org, "SELECT 1 FROM messages WHERE conversation_id = $1", uuid.UUID(keep))) == 1
    assert any(f[b"c"].decode() == keep for f in await stream_entries(redis_client, config, t.org))
    assert len(await rows(owner_db, org, "SELECT 1 FROM contacts WHERE id = $1", uuid.UUID(other))) == 1
    # erasing again: nothing to do
    assert await erasure.erase_contact(config, db, redis_client, t.org, victim) is None


async def test_erasure_removes_dead_letters_and_merged_identities(config, db, owner_db, redis_client, engine):
    t = await seed_tenant(owner_db)
    victim, anon = t.contacts[0], t.contacts[1]
    shard = keys.shard_of(t.org, config.engine.shards)
    # a dead letter of theirs (an entry a worker could not persist)
    await redis_client.xadd(keys.dead_letters(shard), {"t": "m", "o": t.org, "k": victim, "c": str(uuid.uuid4()),
                                                       "f": "{}", "src": "1-1"})
    # an entry written under the anonymous contact they were merged from
    conv = (await engine.start_conversation(t.org, anon, t.app, body="before I logged in")).conversation_id
    async with scoped(db, org_id=t.org) as conn:
        await conn.execute("INSERT INTO contact_merges (org_id, from_contact, into_contact) VALUES ($1, $2, $3)",
                           uuid.UUID(t.org), uuid.UUID(anon), uuid.UUID(victim))
        await conn.execute("DELETE FROM contacts WHERE id = $1", uuid.UUID(anon))
    report = await erasure.erase_contact(config, db, redis_client, t.org, victim)
    assert report.dead_letters == 1 and conv in report.conversations
    assert await stream_entries(redis_client, config, t.org, dead=True) == []
    assert not any(f[b"k"].decode() in (victim, anon) for f in await stream_entries(redis_client, config, t.org))
    assert await rows(owner_db, t.org, "SELECT 1 FROM contact_merges WHERE into_contact = $1", uuid.UUID(victim)) == []


async def test_stream_scan_is_chunked_and_leaves_other_organisations(config, redis_client):
    stream = f"cv:{{test-{uuid.uuid4().hex[:6]}}}:s"
    org, other = str(uuid.uuid4()), str(uuid.uuid4())
    contact = str(uuid.uuid4())
    for i in range(2 * erasure.CHUNK + 5):
        await redis_client.xadd(stream, {"t": "m", "o": org if i % 2 else other, "k": contact, "c": f"c{i % 7}",
                                         "f": "{}"})
    deleted, found = await erasure.erase_stream_entries(redis_client, stream, org, [contact])
    assert deleted == erasure.CHUNK + 2 and found == {f"c{i}" for i in range(7)}
    left = await redis_client.xrange(stream)
    assert len(left) == erasure.CHUNK + 3 and all(f[b"o"].decode() == other for _, f in left)
    await redis_client.delete(stream)


async def test_purging_a_due_organisation_removes_everything(config, db, owner_db, redis_client, engine):
    gone, stays = await seed_tenant(owner_db), await seed_tenant(owner_db)
    convs = []
    for t in (gone, stays):
        conv = (await engine.start_conversation(t.org, t.contacts[0], t.app, body="hello")).conversation_id
        convs.append(conv)
    await persist_everything(config, redis_client, db)
    late = (await engine.start_conversation(gone.org, gone.contacts[1], gone.app, body="late")).conversation_id
    folder = erasure.export_dir(config) / gone.org
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "x.zip").write_bytes(b"archive")

    assert {f[b"c"].decode() for f in await stream_entries(redis_client, config, gone.org)} == {convs[0], late}
    # not scheduled: nothing happens
    assert await erasure.purge_organisation(config, db, redis_client, gone.org) is None
    async with scoped(db, org_id=gone.org) as conn:
        await conn.execute("UPDATE organisations SET deletion_scheduled_at = now() + interval '1 day' WHERE id = $1",
                           uuid.UUID(gone.org))
    assert await erasure.purge_due(config, db, redis_client) == 0  # grace period not over
    async with scoped(db, org_id=gone.org) as conn:
        await conn.execute("UPDATE organisations SET deletion_scheduled_at = now() - interval '1 second' WHERE id = $1",
                           uuid.UUID(gone.org))
    events = []

    async def control(event):
        events.append(event)

    assert await erasure.purge_due(config, db, redis_client, control=control, limit=1000) >= 1
    assert events == [{"kind": "org_deleted", "org": gone.org}]
    for table in ("organisations", "members", "apps", "contacts", "conversations", "messages", "audit_log"):
        assert await rows(owner_db, gone.org, f"SELECT 1 FROM {table} WHERE org_id = $1", uuid.UUID(gone.org)) == [], table
    assert await stream_entries(redis_client, config, gone.org) == []
    shard = keys.shard_of(gone.org, config.engine.shards)
    for conv in (convs[0], late):
        assert not await redis_client.exists(keys.meta(shard, conv), keys.recent(shard, conv))
    assert not folder.exists()
    await persist_everything(config, redis_client, db)
    assert await rows(owner_db, gone.org, "SELECT 1 FROM conversations WHERE org_id = $1", uuid.UUID(gone.org)) == []
    # the other organisation is whole
    assert len(await rows(owner_db, stays.org, "SELECT 1 FROM messages WHERE org_id = $1", uuid.UUID(stays.org))) == 1
    assert [orjson.loads(f[b"f"]) for f in await stream_entries(redis_client, config, stays.org)]


async def _webhook(owner_db, config, org):
    from tests.engine.test_webhooks import add_webhook

    return await add_webhook(owner_db, config, org, "https://hooks.example.com/x")
