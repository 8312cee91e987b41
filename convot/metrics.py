"""Prometheus helpers shared by every process: the /metrics endpoint, pool usage, per-shard
stream statistics and the few counters several services increment.

Each process serves its own registry on its own port (``convot up`` gives gateway *i*
``gateway.metrics_port + i`` and engine *i* ``engine.metrics_port + i``; the admin API serves
``/metrics`` on its own port), so several processes on one host never share or overwrite a
value: Prometheus tells them apart by target (configs/prometheus.yml).

Label values always come from fixed sets -- limit names, pool names, outcomes, shard numbers
(bounded by ``engine.shards``) -- never organisation, user, conversation or shop ids.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("convot.metrics")

# ---- counters incremented by several services -------------------------------------------------

RATE_LIMITED = Counter("convot_rate_limited_total", "Requests or frames refused by a rate limit, by limit", ["limit"])
# Gateway frame limit (error frame) and flood (close 4006); admin API limits by name (HTTP 429).
GATEWAY_LIMITS = ("socket_frames", "socket_flood")

STRIPE_WEBHOOKS = Counter("convot_stripe_webhook_events_total",
                          "Stripe webhook deliveries by outcome (processed, duplicate, unknown_customer, or the "
                          "refusal code)", ["outcome"])
STRIPE_REQUESTS = Counter("convot_stripe_requests_total", "Stripe API calls by operation and outcome",
                          ["operation", "outcome"])
STRIPE_LAST_EVENT = Gauge("convot_stripe_last_event_timestamp_seconds",
                          "Unix time this process last applied a verified Stripe event")
STRIPE_OUTCOMES = ("processed", "duplicate", "unknown_customer", "webhook_signature_invalid",
                   "webhook_timestamp_outside_tolerance", "webhook_payload_invalid", "billing_not_configured")


def initialise(counter, *label_sets) -> None:
    """Create the children of a labelled metric at 0, so a scrape shows the series (and rate()
    works) before the first event: every label value here comes from a fixed set."""
    for labels in label_sets:
        counter.labels(*labels) if isinstance(labels, tuple) else counter.labels(labels)


initialise(STRIPE_WEBHOOKS, *STRIPE_OUTCOMES)
initialise(RATE_LIMITED, *GATEWAY_LIMITS)


def count_rate_limited(*limit_names: str) -> None:
    """One refused request; several limits checked together are one label (``a+b``), a fixed set."""
    RATE_LIMITED.labels("+".join(sorted(limit_names))).inc()


# ---- connection pools ------------------------------------------------------------------------

class PoolCollector(Collector):
    """PostgreSQL (asyncpg) and Redis connection pool usage, read at scrape time.

    One pool per (kind, name): watching a new one under the same name replaces the old one (a
    process holds one pool of each name; tests that start several apps are reported once). The
    scrape runs in prometheus_client's HTTP thread; it only reads lengths and counters.
    """

    def __init__(self):
        self._pools: dict[tuple[str, str], object] = {}

    def watch(self, kind: str, name: str, pool) -> None:
        if kind not in ("postgres", "redis"):
            raise ValueError(kind)
        self._pools[(kind, name)] = pool

    def describe(self):
        return []

    def collect(self):
        families = {
            ("postgres", "state"): GaugeMetricFamily("convot_db_pool_connections",
                                                     "PostgreSQL pool connections by state", labels=["pool", "state"]),
            ("postgres", "max"): GaugeMetricFamily("convot_db_pool_max_connections",
                                                   "PostgreSQL pool size limit", labels=["pool"]),
            ("redis", "state"): GaugeMetricFamily("convot_redis_pool_connections",
                                                  "Redis pool connections by state", labels=["pool", "state"]),
            ("redis", "max"): GaugeMetricFamily("convot_redis_pool_max_connections",
                                                "Redis pool size limit (per node on a cluster)", labels=["pool"]),
        }
        for (kind, name), pool in list(self._pools.items()):
            usage = postgres_usage(pool) if kind == "postgres" else redis_usage(pool)
            if usage is None:
                continue
            in_use, idle, limit = usage
            families[(kind, "state")].add_metric([name, "in_use"], in_use)
            families[(kind, "state")].add_metric([name, "idle"], idle)
            families[(kind, "max")].add_metric([name], limit)
        yield from families.values()


def postgres_usage(pool) -> tuple[int, int, int] | None:
    """(in use, idle, max) of an asyncpg pool; None once it is closing."""
    try:
        if pool.is_closing():
            return None
        size, idle = pool.get_size(), pool.get_idle_size()
        return size - idle, idle, pool.get_max_size()
    except Exception:  # a pool torn down under the scrape
        return None


def redis_usage(client) -> tuple[int, int, int] | None:
    """(in use, idle, max) of a redis.asyncio client (standalone or cluster: summed over nodes)."""
    try:
        if hasattr(client, "get_nodes"):                           # RedisCluster
            in_use = idle = limit = 0
            for node in client.get_nodes():
                free = len(node._free)
                idle += free
                in_use += len(node._connections) - free
                limit += node.max_connections
            return in_use, idle, limit
        pool = client.connection_pool
        if getattr(client, "single_connection_client", False):
            # the client holds its one connection outside the pool's lists
            return (1 if client.connection is not None else 0), 0, 1
        in_use = len(pool._in_use_connections)
        idle = len(pool._available_connections)
        return in_use, idle, pool.max_connections
    except Exception:
        return None


POOLS = PoolCollector()
REGISTRY.register(POOLS)


def watch_pool(kind: str, name: str, pool) -> None:
    """Report this pool's usage as ``convot_db_pool_*`` / ``convot_redis_pool_*{pool=name}``."""
    POOLS.watch(kind, name, pool)


# ---- the /metrics endpoint of a service process ---------------------------------------------

def start_metrics_server(config, port: int):
    """Serve this process's registry on ``metrics.host:port``; returns (server, thread)."""
    from prometheus_client import start_http_server

    return start_http_server(port, addr=config.metrics.host)


async def stop_metrics_server(server) -> None:
    await asyncio.to_thread(server.shutdown)
    server.server_close()


# ---- per-shard stream statistics (engine workers) --------------------------------------------

STREAM_LENGTH = Gauge("convot_engine_stream_length", "Entries in the shard's Redis stream", ["shard"])
STREAM_PENDING = Gauge("convot_engine_stream_pending",
                       "Entries read by a persisting worker but not yet acknowledged (committed)", ["shard"])
OLDEST_UNPERSISTED = Gauge("convot_engine_oldest_unpersisted_age_seconds",
                           "Persist lag: age of the oldest stream entry not yet committed to PostgreSQL "
                           "(0 when everything is persisted)", ["shard"])
REDIS_MEMORY = Gauge("convot_redis_memory_used_bytes", "used_memory of each Redis primary", ["node"])
REDIS_MAXMEMORY = Gauge("convot_redis_maxmemory_bytes", "maxmemory of each Redis primary (0 = no limit)", ["node"])
STATS_ERRORS = Counter("convot_engine_stats_errors_total", "Failed rounds of the shard statistics loop")


def entry_ms(entry_id) -> int:
    if isinstance(entry_id, bytes):
        entry_id = entry_id.decode()
    return int(entry_id.split("-", 1)[0])


@dataclass(frozen=True)
class ShardStats:
    length: int
    pending: int
    oldest_unpersisted_age: float


def shard_stats(now_ms: int, length: int, pending_summary, next_unread) -> ShardStats:
    """Pure: the numbers of one shard from XLEN, XPENDING (summary) and the first entry after
    the group's last-delivered id (``None`` when there is none).

    The oldest unpersisted entry is the older of the oldest pending entry (read, not committed)
    and the first entry never read; its age is the persist lag.
    """
    pending = int(pending_summary.get("pending", 0)) if pending_summary else 0
    candidates = []
    if pending and pending_summary.get("min"):
        candidates.append(entry_ms(pending_summary["min"]))
    if next_unread is not None:
        candidates.append(entry_ms(next_unread))
    age = max(0.0, (now_ms - min(candidates)) / 1000) if candidates else 0.0
    return ShardStats(length, pending, age)


async def collect_shard_stats(redis, streams: list[str], group: str) -> dict[int, ShardStats]:
    """Two pipelines for all shards (each command names one shard key, so a cluster routes it)."""
    pipe = redis.pipeline(transaction=False)
    for s in streams:
        pipe.xlen(s)
        pipe.xpending(s, group)
        pipe.xinfo_groups(s)
    replies = await pipe.execute(raise_on_error=False)
    groups: list[dict | None] = []
    lengths, pendings = [], []
    for i in range(len(streams)):
        length, pending, infos = replies[3 * i:3 * i + 3]
        lengths.append(0 if isinstance(length, Exception) else int(length))
        pendings.append(None if isinstance(pending, Exception) else pending)
        info = None
        if not isinstance(infos, Exception):
            for g in infos:
                name = g.get("name")
                if (name.decode() if isinstance(name, bytes) else name) == group:
                    info = g
        groups.append(info)
    pipe = redis.pipeline(transaction=False)
    for s, info in zip(streams, groups):
        last = info.get("last-delivered-id") if info else b"0-0"
        last = last.decode() if isinstance(last, bytes) else last
        pipe.xrange(s, min=f"({last}", count=1)
    nexts = await pipe.execute(raise_on_error=False)
    now_ms = int(time.time() * 1000)
    out = {}
    for i, s in enumerate(streams):
        nxt = nexts[i]
        first = nxt[0][0] if nxt and not isinstance(nxt, Exception) else None
        out[shard_number(s)] = shard_stats(now_ms, lengths[i], pendings[i], first)
    return out


def shard_number(stream: str) -> int:
    from engine.keys import shard_of_stream

    return shard_of_stream(stream)


async def redis_memory(redis) -> dict[str, tuple[int, int]]:
    """node -> (used_memory, maxmemory) for every primary."""
    if hasattr(redis, "get_nodes"):
        out = {}
        for node in redis.get_primaries():
            info = await redis.info("memory", target_nodes=node)
            out[f"{node.host}:{node.port}"] = (int(info.get("used_memory", 0)), int(info.get("maxmemory", 0)))
        return out
    info = await redis.info("memory")
    kw = redis.connection_pool.connection_kwargs
    node = f"{kw.get('host', 'unix')}:{kw.get('port', kw.get('path', ''))}"
    return {node: (int(info.get("used_memory", 0)), int(info.get("maxmemory", 0)))}


async def run_shard_stats(redis, streams: list[str], group: str, interval: float) -> None:
    """Until cancelled: refresh the per-shard gauges and Redis memory every ``interval`` s."""
    while True:
        try:
            for shard, st in (await collect_shard_stats(redis, streams, group)).items():
                label = str(shard)
                STREAM_LENGTH.labels(label).set(st.length)
                STREAM_PENDING.labels(label).set(st.pending)
                OLDEST_UNPERSISTED.labels(label).set(st.oldest_unpersisted_age)
            for node, (used, limit) in (await redis_memory(redis)).items():
                REDIS_MEMORY.labels(node).set(used)
                REDIS_MAXMEMORY.labels(node).set(limit)
        except asyncio.CancelledError:
            raise
        except Exception as exc:   # Redis down: the gauges keep their last values, the counter says so
            STATS_ERRORS.inc()
            log.warning("shard statistics failed (%s)", type(exc).__name__)
        await asyncio.sleep(interval)


# ---- scrape targets of `convot up` (file_sd of configs/prometheus.yml) -----------------------

def scrape_targets(config, gateways: int, workers: int) -> dict[str, list[dict]]:
    """job file name -> Prometheus file_sd groups: every process `convot up` starts, one group
    each, labelled with its process name (gateway i: gateway.metrics_port + i, ...)."""
    def host(addr: str) -> str:
        return "127.0.0.1" if addr in ("0.0.0.0", "", "::") else addr

    mhost = host(config.metrics.host)
    return {
        "gateway": [{"targets": [f"{mhost}:{config.gateway.metrics_port + i}"],
                     "labels": {"process": f"gateway-{i + 1}"}} for i in range(gateways)],
        "engine": [{"targets": [f"{mhost}:{config.engine.metrics_port + i}"],
                    "labels": {"process": f"engine-{i + 1}"}} for i in range(workers)],
        "admin-api": [{"targets": [f"{host(config.admin_api.host)}:{config.admin_api.port}"],
                       "labels": {"process": "admin-api"}}],
    }


def write_scrape_targets(config, gateways: int, workers: int) -> list:
    """Write <data.dir>/prometheus/<job>.json atomically; returns the paths."""
    import json
    import os

    folder = config.data_dir / "prometheus"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for job, groups in scrape_targets(config, gateways, workers).items():
        path = folder / f"{job}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(groups, indent=2) + "\n")
        os.replace(tmp, path)
        paths.append(path)
    return paths
