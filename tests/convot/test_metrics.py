"""convot/metrics.py: the pure persist-lag computation, per-shard statistics read from a real
Redis, pool usage of real pools, and the bounded rate-limit label."""

from __future__ import annotations

import time
import uuid

import pytest
from prometheus_client import REGISTRY

from convot.db import create_pool
from convot.metrics import (RATE_LIMITED, PoolCollector, collect_shard_stats, count_rate_limited, entry_ms,
                            postgres_usage, redis_memory, redis_usage, shard_stats)
from engine.client import create_redis


def test_nothing_unpersisted_means_no_lag():
    st = shard_stats(10_000, 5, {"pending": 0, "min": None}, None)
    assert (st.length, st.pending, st.oldest_unpersisted_age) == (5, 0, 0.0)


def test_lag_is_the_age_of_the_older_of_pending_and_unread():
    pending = {"pending": 2, "min": b"4000-0"}
    assert shard_stats(10_000, 9, pending, b"7000-1").oldest_unpersisted_age == 6.0
    assert shard_stats(10_000, 9, pending, b"1000-0").oldest_unpersisted_age == 9.0      # unread is older
    assert shard_stats(10_000, 9, {"pending": 0, "min": None}, "8500-3").oldest_unpersisted_age == 1.5
    assert shard_stats(1_000, 9, pending, None).oldest_unpersisted_age == 0.0             # clock skew: never < 0


def test_entry_ms():
    assert entry_ms(b"1700000000123-7") == 1700000000123
    assert entry_ms("5-0") == 5


def test_rate_limit_label_is_the_sorted_set_of_limits():
    before = RATE_LIMITED.labels("a_limit+b_limit")._value.get()
    count_rate_limited("b_limit", "a_limit")
    assert RATE_LIMITED.labels("a_limit+b_limit")._value.get() == before + 1


async def test_shard_stats_from_a_real_stream(config, redis_client):
    stream = f"cv:{{{9000 + uuid.uuid4().int % 1000}}}:s"
    group = "persist"
    old_ms = int(time.time() * 1000) - 5000
    await redis_client.xgroup_create(stream, group, id="0", mkstream=True)
    for i in range(4):
        await redis_client.xadd(stream, {"x": "1"}, id=f"{old_ms + i}-0")
    await redis_client.xreadgroup(group, "c1", {stream: ">"}, count=3)      # 3 read, 1 unread
    redis = create_redis(config)
    try:
        stats = await collect_shard_stats(redis, [stream], group)
        st = stats[int(stream.split("{")[1].split("}")[0])]
        assert (st.length, st.pending) == (4, 3)
        assert 4.5 < st.oldest_unpersisted_age < 60
        await redis_client.xack(stream, group, f"{old_ms}-0", f"{old_ms + 1}-0", f"{old_ms + 2}-0")
        st = next(iter((await collect_shard_stats(redis, [stream], group)).values()))
        assert st.pending == 0 and 4.5 < st.oldest_unpersisted_age < 60    # the unread one is as old
        await redis_client.xreadgroup(group, "c1", {stream: ">"})
        await redis_client.xack(stream, group, f"{old_ms + 3}-0")
        st = next(iter((await collect_shard_stats(redis, [stream], group)).values()))
        assert (st.pending, st.oldest_unpersisted_age) == (0, 0.0)
        memory = await redis_memory(redis)
        assert len(memory) == 1 and next(iter(memory.values()))[0] > 0
    finally:
        await redis.aclose()
        await redis_client.delete(stream)


async def test_stream_without_group_counts_everything_unpersisted(config, redis_client):
    stream = f"cv:{{{8000 + uuid.uuid4().int % 1000}}}:s"
    await redis_client.xadd(stream, {"x": "1"}, id=f"{int(time.time() * 1000) - 3000}-0")
    redis = create_redis(config)
    try:
        st = next(iter((await collect_shard_stats(redis, [stream], "persist")).values()))
        assert st.length == 1 and st.pending == 0 and st.oldest_unpersisted_age >= 2.5
    finally:
        await redis.aclose()
        await redis_client.delete(stream)


async def test_pool_usage_of_real_pools(config, servers):
    pool = await create_pool(servers.database_url, min_size=1, max_size=3)
    redis = create_redis(config)
    collector = PoolCollector()
    try:
        async with pool.acquire():
            assert postgres_usage(pool) == (1, 0, 3)
            collector.watch("postgres", "main", pool)
            collector.watch("redis", "main", redis)
            await redis.ping()
            families = {f.name: f for f in collector.collect()}
            got = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in families.values() for s in f.samples}
            assert got[("convot_db_pool_connections", (("pool", "main"), ("state", "in_use")))] == 1
            assert got[("convot_db_pool_max_connections", (("pool", "main"),))] == 3
            assert got[("convot_redis_pool_connections", (("pool", "main"), ("state", "idle")))] == 1
        in_use, idle, limit = redis_usage(redis)
        assert (in_use, idle, limit) == (0, 1, config.redis.max_connections)
    finally:
        await redis.aclose()
        await pool.close()
    assert postgres_usage(pool) is None                      # closed pools drop out of the scrape
    with pytest.raises(ValueError):
        collector.watch("mysql", "main", pool)


def test_the_process_registry_has_the_pool_collector():
    names = {m.name for m in REGISTRY.collect()}
    assert "convot_db_pool_connections" in names and "convot_redis_pool_max_connections" in names
