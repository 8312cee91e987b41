"""Persistence: idempotent, order-independent writes; claims of dead consumers; trimming
that never drops an unpersisted entry, nor one another live consumer group still needs;
poison entries isolated to dead letters."""

import asyncio
import logging
import random
import uuid

import orjson
import pytest

from convot.db import scoped
from engine import assignment, keys, webhooks
from engine.client import EngineClient
from engine.persist import plan, write
from engine.worker import Worker
from tests.engine.seed import seed_tenant


async def _entries(redis_client, config, org):
    stream = keys.stream(keys.shard_of(org, config.engine.shards))
    return [(eid, f) for eid, f in await redis_client.xrange(stream) if f[b"o"].decode() == org]


async def _conversation(db, org, conv):
    async with scoped(db, org_id=org) as conn:
        row = await conn.fetchrow("SELECT status, assignee_id, last_seq, state_rev, first_message FROM conversations WHERE id = $1", conv)
        msgs = await conn.fetch("SELECT seq, body, deleted_at FROM messages WHERE conversation_id = $1 ORDER BY seq", conv)
        tags = await conn.fetch("SELECT t.name FROM conversation_tags ct JOIN tags t ON t.id = ct.tag_id WHERE ct.conversation_id = $1 ORDER BY 1", conv)
    return row, msgs, [t["name"] for t in tags]


async def test_any_order_and_replays_give_the_same_result(config, db, owner_db, redis_client):
    tenant = await seed_tenant(owner_db)
    engine = EngineClient(config, pool=db)
    await engine.start()
    try:
        contact, agent = tenant.contacts[0], tenant.agents[0]
        conv = (await engine.start_conversation(tenant.org, contact, tenant.app, body="first words")).conversation_id
        for i in range(5):
            await engine.send_message(tenant.org, conv, type="outgoing", author_kind="member", author_id=agent, body=f"r{i}")
        await engine.update_conversation(tenant.org, conv, status="resolved", assignee_id=agent, add_tags=["vip", "refund"],
                                         actor=("member", agent))
        await engine.delete_message(tenant.org, conv, 3, actor=("member", tenant.admins[0]))
        await engine.update_conversation(tenant.org, conv, status="pending", remove_tags=["refund"], actor=("member", agent))
    finally:
        await engine.close()
    entries = await _entries(redis_client, config, tenant.org)
    shuffled = entries[:]
    random.Random(3).shuffle(shuffled)
    # Two "workers" commit halves in the wrong order, then everything is replayed.
    await write(db, plan(shuffled[len(shuffled) // 2:]))
    await write(db, plan(shuffled[:len(shuffled) // 2]))
    await write(db, plan(entries))
    row, msgs, tags = await _conversation(db, tenant.org, conv)
    assert (row["status"], str(row["assignee_id"]), row["last_seq"]) == ("pending", agent, 6)
    assert row["first_message"] == "first words" and tags == ["vip"]
    assert [m["seq"] for m in msgs] == [1, 2, 3, 4, 5, 6]
    assert msgs[2]["deleted_at"] is not None and msgs[2]["body"] == ""


async def test_deleted_conversation_is_not_resurrected_by_a_late_message(config, db, owner_db, redis_client):
    tenant = await seed_tenant(owner_db)
    engine = EngineClient(config, pool=db)
    await engine.start()
    try:
        conv = (await engine.start_conversation(tenant.org, tenant.contacts[0], tenant.app, body="hi")).conversation_id
        await engine.delete_conversation(tenant.org, conv, actor=("member", tenant.admins[0]))
    finally:
        await engine.close()
    entries = await _entries(redis_client, config, tenant.org)
    deletion = [e for e in entries if b'"deleted"' in e[1][b"f"] and e[1][b"t"] == b"u"]
    await write(db, plan(deletion))                           # the deletion commits first
    await write(db, plan([e for e in entries if e not in deletion]))   # the message arrives late
    row, msgs, _ = await _conversation(db, tenant.org, conv)
    assert row is None and msgs == []


async def test_a_lost_script_cache_does_not_stop_the_persisted_sequence(config, db, owner_db, redis_client):
    """Redis restarted from its AOF has the data but no scripts: persisted.lua is loaded again."""
    tenant = await seed_tenant(owner_db)
    worker = Worker(config, redis=redis_client, pool=db, consumer=f"w-{uuid.uuid4().hex[:6]}")
    await worker.setup()
    while await worker.step():        # what earlier tests left
        pass
    engine = EngineClient(config, pool=db)
    await engine.start()
    try:
        conv = (await engine.start_conversation(tenant.org, tenant.contacts[0], tenant.app, body="hi")).conversation_id
        await engine.send_message(tenant.org, conv, type="outgoing", author_kind="member", author_id=tenant.agents[0],
                                  body="hello")
    finally:
        await engine.close()
    await redis_client.script_flush()
    while await worker.step():
        pass
    meta = keys.meta(keys.shard_of(tenant.org, config.engine.shards), conv)
    assert int(await redis_client.hget(meta, "pseq")) == 2
    shard = keys.stream(keys.shard_of(tenant.org, config.engine.shards))
    assert (await redis_client.xpending(shard, keys.GROUP))["pending"] == 0


async def test_dead_workers_pending_entries_are_claimed(config, db, owner_db, redis_client):
    cfg = config.replace(engine={"claim_idle_ms": 200})
    tenant = await seed_tenant(owner_db)
    engine = EngineClient(cfg, pool=db)
    await engine.start()
    dead = Worker(cfg, redis=redis_client, pool=db, consumer=f"dead-{uuid.uuid4().hex[:6]}")
    await dead.setup()
    while await dead.step():       # drain what earlier tests left, so the next read is ours
        pass
    try:
        conv = (await engine.start_conversation(tenant.org, tenant.contacts[0], tenant.app, body="hi")).conversation_id
        for i in range(9):
            await engine.send_message(tenant.org, conv, type="outgoing", author_kind="member",
                                      author_id=tenant.agents[0], body=f"m{i}")
    finally:
        await engine.close()
    # The "dead" consumer reads the batch and crashes before writing or acknowledging it.
    taken = await redis_client.xreadgroup(keys.GROUP, dead.consumer, {s: ">" for s in dead.streams}, count=1000)
    assert sum(len(items) for _, items in taken) >= 11
    live = Worker(cfg, redis=redis_client, pool=db, consumer=f"live-{uuid.uuid4().hex[:6]}")
    await live.setup()
    await asyncio.sleep(0.3)
    live._last_maintenance = 0
    await live.step()
    row, msgs, _ = await _conversation(db, tenant.org, conv)
    assert [m["seq"] for m in msgs] == list(range(1, 11)) and row["last_seq"] == 10
    shard = keys.stream(keys.shard_of(tenant.org, cfg.engine.shards))
    pending = await redis_client.xpending(shard, keys.GROUP)
    assert pending["pending"] == 0


async def test_trim_keeps_every_unacknowledged_entry(config, db, owner_db, redis_client):
    cfg = config.replace(engine={"stream_retention": 1, "claim_idle_ms": 60000})
    tenant = await seed_tenant(owner_db)
    engine = EngineClient(cfg, pool=db)
    await engine.start()
    worker = Worker(cfg, redis=redis_client, pool=db, consumer=f"t-{uuid.uuid4().hex[:6]}")
    await worker.setup()
    while await worker.step():
        pass
    stream = keys.stream(keys.shard_of(tenant.org, cfg.engine.shards))
    try:
        conv = (await engine.start_conversation(tenant.org, tenant.contacts[0], tenant.app, body="hi")).conversation_id
        # Read (delivered) but not acknowledged: pending entries must survive any trim.
        for i in range(5):
            await engine.send_message(tenant.org, conv, type="outgoing", author_kind="member",
                                      author_id=tenant.agents[0], body=f"m{i}")
    finally:
        await engine.close()
    taken = await redis_client.xreadgroup(keys.GROUP, "holder", {stream: ">"}, count=1000)
    # Other tests' consumer groups share this shard stream; a lag cap of one entry passes them
    # by, so only the persisting group's own protection is at stake here.
    await worker.scripts.run(redis_client, "trim", [stream], [keys.GROUP, 1, 10000, 600000, 1])
    left = {f[b"c"].decode() == conv and f.get(b"s") for _, f in await redis_client.xrange(stream)}
    ours = [f for _, f in await redis_client.xrange(stream) if f[b"c"].decode() == conv and f[b"t"] == b"m"]
    assert [int(f[b"s"]) for f in ours] == [1, 2, 3, 4, 5, 6], left
    # Once everything is persisted and acknowledged, the stream is cut to its retention.
    await worker.persist([(stream, eid, f) for _, items in taken for eid, f in items])
    await redis_client.xack(stream, keys.GROUP, *[eid for _, items in taken for eid, _ in items])
    await worker.scripts.run(redis_client, "trim", [stream], [keys.GROUP, 1, 10000, 600000, 1])
    assert await redis_client.xlen(stream) <= 2


async def _own_stream(redis_client, n: int) -> tuple[str, list[bytes]]:
    """A stream of ``n`` entries of its own (a shard stream's key shape, an unused hash tag)."""
    stream = f"cv:{{trim-{uuid.uuid4().hex[:10]}}}:s"
    pipe = redis_client.pipeline(transaction=False)
    for i in range(n):
        pipe.xadd(stream, {"n": str(i)})
    return stream, await pipe.execute()


async def _group(redis_client, stream: str, group: str, *, read: int, ack: int) -> None:
    """``group`` from the start, one consumer that read ``read`` entries and acknowledged ``ack``."""
    await redis_client.xgroup_create(stream, group, id="0")
    if read:
        taken = await redis_client.xreadgroup(group, f"{group}-c", {stream: ">"}, count=read)
        if ack:
            await redis_client.xack(stream, group, *[eid for eid, _ in taken[0][1][:ack]])


def _trimmer(config, redis_client, stream: str) -> Worker:
    worker = Worker(config, redis=redis_client, pool=None, consumer=f"t-{uuid.uuid4().hex[:6]}")
    worker.streams = [stream]
    return worker


async def _ids(redis_client, stream: str) -> list[bytes]:
    return [eid for eid, _ in await redis_client.xrange(stream)]


@pytest.mark.parametrize("group", [webhooks.GROUP, assignment.GROUP])
async def test_trim_keeps_what_a_lagging_group_has_not_read(config, redis_client, caplog, group):
    cfg = config.replace(engine={"stream_retention": 10})
    stream, ids = await _own_stream(redis_client, 25)
    await _group(redis_client, stream, keys.GROUP, read=25, ack=25)   # everything persisted
    await _group(redis_client, stream, group, read=10, ack=8)         # two pending, fifteen unread
    worker = _trimmer(cfg, redis_client, stream)
    with caplog.at_level(logging.INFO, logger="convot.engine.worker"):
        await worker._trim()
    assert await _ids(redis_client, stream) == ids[8:]        # not cut to the retention's 10
    assert not [r for r in caplog.records if "stale" in r.getMessage()]
    # Once the group has caught up, the stream comes down to its retention.
    rest = await redis_client.xreadgroup(group, f"{group}-c", {stream: ">"}, count=100)
    assert [eid for eid, _ in rest[0][1]] == ids[10:]
    await redis_client.xack(stream, group, *ids[8:])
    await worker._trim()
    assert await _ids(redis_client, stream) == ids[-10:]


def _stale_gauge(group: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("convot_engine_stale_consumer_groups", {"group": group})


async def test_a_stale_group_does_not_block_trimming(config, redis_client, caplog):
    cfg = config.replace(engine={"stream_retention": 10})
    stream, ids = await _own_stream(redis_client, 18)   # webhooks needs 17: within the lag cap (20)
    await _group(redis_client, stream, keys.GROUP, read=18, ack=18)
    await _group(redis_client, stream, webhooks.GROUP, read=3, ack=1)   # a dispatcher that then stopped
    await _group(redis_client, stream, "retired", read=0, ack=0)         # never had a consumer
    worker = _trimmer(cfg, redis_client, stream)
    caplog.set_level(logging.INFO, logger="convot.engine.worker")
    # A group without consumers is stale at once; the webhooks consumer was active just now.
    await worker._trim()
    assert await _ids(redis_client, stream) == ids[1:]
    await asyncio.sleep(0.05)
    worker.stale_idle_ms = 20          # its consumer has been idle longer than that now
    await worker._trim()
    await worker._trim()
    assert await _ids(redis_client, stream) == ids[-10:]
    warned = sorted(r.getMessage() for r in caplog.records
                    if r.levelno == logging.WARNING and r.name == "convot.engine.worker")
    assert warned == [f"consumer group {name} of {stream} is stale (no consumer active): trimming removes "
                      "entries it has not read or acknowledged" for name in ("retired", "webhooks")]
    assert (_stale_gauge("webhooks"), _stale_gauge("other"), _stale_gauge("assignment")) == (1, 1, 0)
    # The dispatcher comes back: what it still had pending or unread beyond the retention is
    # gone, the rest is there; reading it ends the stale state.
    caplog.clear()
    back = await redis_client.xreadgroup(webhooks.GROUP, "webhooks-c", {stream: ">"}, count=100)
    assert [eid for eid, _ in back[0][1]] == ids[-10:]
    await redis_client.xack(stream, webhooks.GROUP, *ids)
    await redis_client.xadd(stream, {"n": "18"})
    await worker._trim()
    assert [r.getMessage() for r in caplog.records if r.name == "convot.engine.worker"] == [
        f"consumer group webhooks of {stream} no longer loses entries to trimming"]
    assert _stale_gauge("webhooks") == 0 and _stale_gauge("other") == 1


async def test_a_live_group_too_far_behind_keeps_only_the_lag_cap(config, redis_client, caplog):
    cfg = config.replace(engine={"stream_retention": 5})
    stream, ids = await _own_stream(redis_client, 25)
    await _group(redis_client, stream, keys.GROUP, read=25, ack=25)
    await _group(redis_client, stream, assignment.GROUP, read=2, ack=0)
    worker = _trimmer(cfg, redis_client, stream)
    assert worker.stale_lag == 10      # engine.stream_retention x STALE_GROUP_LAG_RETENTIONS
    with caplog.at_level(logging.WARNING, logger="convot.engine.worker"):
        await worker._trim()
    assert await _ids(redis_client, stream) == ids[-10:]
    assert [r.getMessage() for r in caplog.records if r.name == "convot.engine.worker"] == [
        f"consumer group assignment of {stream} is stale (too far behind): trimming removes entries it "
        "has not read or acknowledged"]


async def test_trim_waits_for_the_persisting_group_however_stale(config, redis_client):
    cfg = config.replace(engine={"stream_retention": 5})
    stream, ids = await _own_stream(redis_client, 25)
    await _group(redis_client, stream, keys.GROUP, read=3, ack=1)    # PostgreSQL down for a long time
    worker = _trimmer(cfg, redis_client, stream)
    await asyncio.sleep(0.05)
    worker.stale_idle_ms = 20
    await worker._trim()
    assert await _ids(redis_client, stream) == ids[1:]


async def test_trim_without_the_persisting_group_removes_nothing(config, redis_client):
    cfg = config.replace(engine={"stream_retention": 5})
    stream, ids = await _own_stream(redis_client, 25)
    await _group(redis_client, stream, webhooks.GROUP, read=25, ack=25)
    await _trimmer(cfg, redis_client, stream)._trim()
    assert await _ids(redis_client, stream) == ids


async def test_poison_entry_goes_to_dead_letters_and_the_rest_is_stored(config, db, owner_db, redis_client):
    tenant = await seed_tenant(owner_db)
    engine = EngineClient(config, pool=db)
    await engine.start()
    worker = Worker(config, redis=redis_client, pool=db, consumer=f"p-{uuid.uuid4().hex[:6]}")
    await worker.setup()
    while await worker.step():
        pass
    try:
        conv = (await engine.start_conversation(tenant.org, tenant.contacts[0], tenant.app, body="ok 1")).conversation_id
        # A conversation whose contact does not exist: its rows violate a foreign key.
        ghost = await engine.create_conversation(tenant.org, str(uuid.uuid4()), tenant.app)
        await engine.send_message(tenant.org, ghost, type="outgoing", author_kind="member", author_id=None, body="lost?")
        await engine.send_message(tenant.org, conv, type="outgoing", author_kind="member",
                                  author_id=tenant.agents[0], body="ok 2")
    finally:
        await engine.close()
    while await worker.step():
        pass
    _, msgs, _ = await _conversation(db, tenant.org, conv)
    assert [m["body"] for m in msgs] == ["ok 1", "ok 2"]
    shard = keys.shard_of(tenant.org, config.engine.shards)
    dead = [orjson.loads(f[b"f"]) for _, f in await redis_client.xrange(keys.dead_letters(shard))
            if f[b"c"].decode() == ghost]
    assert len(dead) == 2
    pending = await redis_client.xpending(keys.stream(shard), keys.GROUP)
    assert pending["pending"] == 0


async def test_a_lost_group_is_created_again_and_persisting_goes_on(config, db, owner_db, other_db):
    """Redis restarted without its data (here: the group destroyed): the worker recreates its
    group instead of stopping, and what was appended afterwards is persisted."""
    from engine.client import create_redis
    from engine.resp import StreamReaderConnection

    cfg = config.replace(redis={"url": other_db(config.redis.url, 7)})
    redis = create_redis(cfg)
    reader = StreamReaderConnection(cfg.redis.url)
    tenant = await seed_tenant(owner_db)
    engine = EngineClient(cfg, pool=db)
    await engine.start()
    worker = Worker(cfg, redis=redis, pool=db, reader=reader)
    await worker.setup()
    task = asyncio.get_running_loop().create_task(worker.run())
    try:
        conv = (await engine.start_conversation(tenant.org, tenant.contacts[0], tenant.app, body="before")).conversation_id

        async def stored(n):
            for _ in range(400):
                _, msgs, _ = await _conversation(db, tenant.org, conv)
                if len(msgs) >= n:
                    return msgs
                await asyncio.sleep(0.05)
            raise AssertionError(f"{n} messages not persisted")

        await stored(1)
        for stream in worker.streams:
            await redis.xgroup_destroy(stream, keys.GROUP)
        await engine.send_message(tenant.org, conv, type="outgoing", author_kind="member",
                                  author_id=tenant.agents[0], body="after")
        msgs = await stored(2)
        assert [m["body"] for m in msgs] == ["before", "after"]
        assert not task.done(), "the worker keeps running"
    finally:
        worker.stopping = True
        await asyncio.wait_for(task, 15)
        await engine.close()
        await redis.flushdb()
        await redis.aclose()
        await reader.aclose()
