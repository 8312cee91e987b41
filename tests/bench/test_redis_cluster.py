"""steady-chat in short mode against a 3-node Redis Cluster (started locally by
bench/cluster.py): gateways and a worker as processes with redis.cluster = true; zero loss,
duplicates and reordering on the sockets, and every stream entry persisted to PostgreSQL."""

import asyncio
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.cluster import EmbeddedRedisCluster
from bench.scenarios.steady_chat import Params, run
from bench.stack import Services, wait_until

pytestmark = pytest.mark.slow


def engine_samples(port: int) -> dict:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def total(samples: dict, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


async def test_short_steady_chat_on_a_three_node_redis_cluster(servers, tmp_path):
    cluster = EmbeddedRedisCluster(tmp_path / "cluster", servers.secrets, nodes=3)
    await asyncio.to_thread(cluster.start)
    cfg = servers.config(redis={"url": cluster.url(), "cluster": True},
                         gateway={"rate_limit_per_second": 100.0}, metrics={"shard_stats_interval": 0.5})
    services = Services(cfg, gateways=2, workers=1)
    try:
        await asyncio.to_thread(services.start)
        p = Params(shoppers=12, orgs=6, agents=2, rate=60.0, duration=3.0, settle=1.0, processes=2)
        result = await asyncio.to_thread(run, cfg, p, "127.0.0.1", [cfg.gateway.port], quiet=True)
        port = services.metrics_ports["engine-1"]
        conversations = p.shoppers               # one "conversation created" entry each

        def persisted() -> bool:
            s = engine_samples(port)
            return total(s, "convot_engine_persisted_total") == result.acked + conversations and \
                total(s, "convot_engine_stream_pending") == 0
        all_persisted = await asyncio.to_thread(wait_until, persisted, 30)
        samples = engine_samples(port)
    finally:
        await asyncio.to_thread(services.stop)
        await asyncio.to_thread(cluster.stop)
    assert result.sent > 100 and result.acked == result.sent, result.errors
    assert result.expected_deliveries == result.acked * 3
    assert (result.lost, result.duplicated, result.out_of_order) == (0, 0, 0) and result.ok()
    assert all_persisted, (total(samples, "convot_engine_persisted_total"), result.acked)
    assert total(samples, "convot_engine_dead_letters_total") == 0
    assert len({dict(ls)["node"] for n, ls in samples if n == "convot_redis_memory_used_bytes"}) == 3
