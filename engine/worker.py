"""Engine worker: persists every shard stream to PostgreSQL through one consumer group.

Each worker process is one consumer of the group ``persist`` on every shard stream:

* XREADGROUP a batch (up to engine.batch_max entries; a partial batch waits engine.batch_linger_ms
  for more), plan it (engine.persist), write it in one transaction, and only after COMMIT: XACK and raise the conversations' persisted seq;
* PostgreSQL down: keep the batch, retry with capped backoff, never acknowledge; live chat
  does not depend on the worker at all;
* an entry that violates a constraint (its contact was erased meanwhile, ...) is isolated by
  writing the batch entry by entry, copied to the shard's dead-letter stream and acknowledged,
  so one bad entry can never block a shard;
* entries pending longer than engine.claim_idle_ms on another consumer (a dead worker) are
  taken over with XAUTOCLAIM;
* reading, lingering, claiming and acknowledging are engine/groups.py's ``GroupReader``;
* streams are trimmed to engine.stream_retention, never past an entry that any consumer group
  (this one, ``webhooks``, ``assignment``...) has not read or acknowledged, unless that other
  group is stale (engine/lua/trim.lua; docs/architecture.md, "Trimming").

On cancellation (SIGTERM) the batch in hand is finished and acknowledged before returning.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import asyncpg
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from convot.config import Config
from convot.db import create_pool_from_config
from convot.metrics import initialise, run_shard_stats, start_metrics_server, stop_metrics_server, watch_pool
from engine import keys
from engine import metrics as m
from engine.client import create_redis
from engine.groups import GroupReader
from engine.persist import plan, write
from engine.resp import StreamReaderConnection
from engine.scripts import Scripts

log = logging.getLogger("convot.engine.worker")

_PG_TRANSIENT = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
                 asyncpg.TooManyConnectionsError, asyncpg.AdminShutdownError, asyncpg.CrashShutdownError,
                 asyncpg.DeadlockDetectedError, asyncpg.SerializationError, TimeoutError,
                 asyncpg.ConnectionDoesNotExistError)
_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
READ_BLOCK_MS = 500
MAINTENANCE_SECONDS = 1.0
TRIM_STEP = 10000                     # entries removed per stream and trim call at most
# A consumer group other than ours stops holding trimming back once none of its consumers has
# read or claimed for this long (a feature removed, a renamed group, a dispatcher that died) ...
STALE_GROUP_IDLE_MS = 10 * 60 * 1000
# ... or, alive, once it needs more than this many times engine.stream_retention newest entries.
STALE_GROUP_LAG_RETENTIONS = 2
STOP_GRACE_SECONDS = 10.0


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _claimed(stream: str, n: int) -> None:
    m.claimed.inc(n)
    log.info("claimed %d idle entries of %s", n, stream)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, _PG_TRANSIENT):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        # Class 08 connection exceptions, 53 insufficient resources, 57 operator intervention.
        return (getattr(exc, "sqlstate", "") or "")[:2] in ("08", "53", "57", "58")
    return False


class Worker:
    def __init__(self, config: Config, *, redis=None, pool=None, consumer: str | None = None, reader=None):
        self.config = config
        self.e = config.engine
        self.redis = redis
        # The batch read goes through the lean RESP client (engine/resp.py) when given one;
        # redis-py otherwise (tests, Redis Cluster).
        self.reader = reader
        self.pool = pool
        self.scripts = Scripts()
        # "0": a new group starts with everything in the stream, none of it persisted yet; so does
        # one created again after Redis lost its data (writes are idempotent: nothing is doubled),
        # and the scripts, lost with it, are loaded again first.
        self.group_reader = GroupReader(
            redis, keys.GROUP, [keys.stream(s) for s in range(self.e.shards)], start_id="0", count=self.e.batch_max,
            claim_idle_ms=self.e.claim_idle_ms, linger=self.e.batch_linger_ms / 1000, consumer=consumer,
            connection=reader, claim_limit=self.e.batch_max, on_claimed=_claimed,
            on_recreate=lambda: self.scripts.load(self.redis))
        self.consumer = self.group_reader.consumer
        self.stopping = False
        self._last_maintenance = 0.0
        self.stale_idle_ms = STALE_GROUP_IDLE_MS
        self.stale_lag = STALE_GROUP_LAG_RETENTIONS * self.e.stream_retention
        self._stale: dict[str, dict[str, str]] = {}   # stream -> stale group -> reason, as last logged

    @property
    def streams(self) -> list[str]:
        return self.group_reader.streams

    @streams.setter
    def streams(self, streams: list[str]) -> None:
        self.group_reader.streams = list(streams)

    async def setup(self) -> None:
        await self.scripts.load(self.redis)
        await self.group_reader.create()

    async def run(self) -> None:
        """Until ``stopping`` is set; finishes the batch in hand."""
        backoff = 0.2
        while not self.stopping:
            try:
                await self.step()
                backoff = 0.2
                continue
            except (*_REDIS_DOWN, ResponseError) as exc:
                # (a lost group, NOGROUP, is created again by the GroupReader and never gets here)
                m.redis_errors.inc()
                log.warning("Redis unavailable (%s); retrying in %.1fs", type(exc).__name__, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def step(self) -> int:
        """Read one batch (claimed entries first), persist and acknowledge it; returns its size."""
        now = time.monotonic()
        entries: list[tuple[str, bytes, dict]] = []
        if now - self._last_maintenance >= MAINTENANCE_SECONDS:
            self._last_maintenance = now
            entries = await self.group_reader.claim()
            await self._trim()
        if not entries:
            # A partial batch lingers for more (not while stopping), so a busy shard set costs a
            # few large transactions (one commit, one XACK, one persisted.lua each), not many small.
            entries = await self.group_reader.read(READ_BLOCK_MS, linger=not self.stopping)
        if entries:
            await self.persist(entries)
        return len(entries)

    async def _trim(self) -> None:
        for stream in self.streams:
            reply = await self.scripts.run(self.redis, "trim", [stream], [
                keys.GROUP, self.e.stream_retention, TRIM_STEP, self.stale_idle_ms, self.stale_lag])
            removed, checked = int(reply[0]), int(reply[1])
            if removed:
                m.trimmed.inc(removed)
            if checked:
                self._note_stale(stream, {_text(reply[i]): _text(reply[i + 1]) for i in range(2, len(reply) - 1, 2)})
        # the gauge: on how many shards each group is being passed by right now
        counts = dict.fromkeys((*m.KNOWN_GROUPS, "other"), 0)
        for groups in self._stale.values():
            for group in groups:
                counts[group if group in m.KNOWN_GROUPS else "other"] += 1
        for group, n in counts.items():
            m.stale_groups.labels(group).set(n)

    def _note_stale(self, stream: str, now: dict[str, str]) -> None:
        """Log a stale group once when trimming starts removing entries it needs, and once when
        that stops (its consumers came back, or nothing it needs is left to trim)."""
        before = self._stale.get(stream, {})
        for group, reason in now.items():
            if before.get(group) != reason:
                why = "no consumer active" if reason == "idle" else "too far behind"
                log.warning("consumer group %s of %s is stale (%s): trimming removes entries it has not "
                            "read or acknowledged", group, stream, why)
        for group in before.keys() - now.keys():
            log.info("consumer group %s of %s no longer loses entries to trimming", group, stream)
        if now:
            self._stale[stream] = now
        else:
            self._stale.pop(stream, None)

    async def persist(self, entries: list[tuple[str, bytes, dict]]) -> None:
        started = time.monotonic()
        bad: list[tuple[str, bytes, dict]] = []
        raw = [(eid, f) for _, eid, f in entries]
        plans = plan(raw)
        await self._write_with_retry(raw, entries, bad, plans)
        # Committed: acknowledge, and let Redis trim recent lists down to their cap again.
        pipe = self.redis.pipeline(transaction=False)
        for stream, bad_id, fields in bad:
            shard = stream.split("{", 1)[1].split("}", 1)[0]
            pipe.xadd(keys.dead_letters(int(shard)), {**fields, b"src": bad_id}, maxlen=10000, approximate=True)
        self.group_reader.add_acks(pipe, entries)
        seqs_by_shard: dict[int, list] = {}
        for p in plans.values():
            shard = keys.shard_of(p.org_id, self.e.shards)
            for conv, seq in p.max_seq.items():
                seqs_by_shard.setdefault(shard, []).extend((conv, seq))
        self._add_persisted(pipe, seqs_by_shard)
        await self._after_commit(pipe, seqs_by_shard)
        m.persisted.inc(len(entries) - len(bad))
        m.batch_size.observe(len(entries))
        oldest_ms = min(int(eid.split(b"-", 1)[0]) for _, eid, _ in entries)
        m.persist_lag.observe(max(0.0, time.time() - oldest_ms / 1000))   # append -> acknowledged
        m.persist_seconds.observe(time.monotonic() - started)
        if bad:
            m.dead_letters.inc(len(bad))

    def _add_persisted(self, pipe, seqs_by_shard: dict[int, list]) -> None:
        """One persisted.lua call per shard: (conversation, seq) pairs whose pseq may rise."""
        for shard, args in seqs_by_shard.items():
            pipe.evalsha(self.scripts.persisted.sha, 1, keys.stream(shard), len(args) // 2, *args)

    async def _after_commit(self, pipe, seqs_by_shard: dict[int, list]) -> None:
        """Run the acknowledgements and persisted.lua calls.  Redis restarted from its AOF
        keeps the data but not the script cache: then persisted.lua answers NOSCRIPT, and
        ignoring it would leave every conversation's persisted sequence behind for good (the
        recent lists never trimmed back to their cap).  Scripts are loaded again and the
        calls repeated; any other failure is logged -- the entries stay pending and are
        written again (idempotently) and acknowledged by a later batch."""
        results = await pipe.execute(raise_on_error=False)
        if any(isinstance(r, NoScriptError) for r in results):
            await self.scripts.load(self.redis)
            again = self.redis.pipeline(transaction=False)
            self._add_persisted(again, seqs_by_shard)
            results = [r for r in results if not isinstance(r, NoScriptError)]
            results += await again.execute(raise_on_error=False)
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            log.warning("after commit: %d of %d acknowledgement/persisted-sequence calls failed (%s)",
                        len(failed), len(results), type(failed[0]).__name__)

    async def _write_with_retry(self, raw, entries, bad, plans=None) -> None:
        backoff = 0.1
        deadline = None
        while True:
            try:
                await write(self.pool, plans if plans is not None else plan(raw))
                return
            except Exception as exc:
                if _is_transient(exc):
                    m.pg_errors.inc()
                    if self.stopping:
                        deadline = deadline or time.monotonic() + STOP_GRACE_SECONDS
                        if time.monotonic() > deadline:
                            raise asyncio.CancelledError from None  # leave it pending for a live worker
                    log.warning("PostgreSQL unavailable (%s); batch of %d kept, retrying in %.1fs",
                                type(exc).__name__, len(raw), backoff)
                    await asyncio.sleep(backoff * (0.5 + random.random()))
                    backoff = min(backoff * 2, 2.0)
                    continue
                if not isinstance(exc, (asyncpg.PostgresError, ValueError, KeyError, TypeError)):
                    raise
                if len(raw) == 1:
                    log.error("entry %s cannot be persisted (%s); moved to dead letters",
                              raw[0][0], type(exc).__name__)
                    bad.extend(e for e in entries if e[1] == raw[0][0])
                    return
                # Isolate the bad entry: persist one by one (each its own transaction).
                for one in raw:
                    await self._write_with_retry([one], entries, bad)
                return


async def serve(config: Config) -> None:
    from engine import webhooks

    # webhook deliveries run in engine workers (docs/webhooks.md): every outcome's series from the start
    initialise(webhooks.attempts_total, "ok", "http_error", "timeout", "error")
    httpd, _thread = start_metrics_server(config, config.engine.metrics_port)
    redis = create_redis(config)
    pool = await _pool_when_ready(config)
    watch_pool("postgres", "main", pool)
    watch_pool("redis", "main", redis)
    reader = None if config.redis.cluster else StreamReaderConnection(config.redis.url)
    worker = Worker(config, redis=redis, pool=pool, reader=reader)
    # stream length, pending count and persist lag per shard, Redis memory (convot/metrics.py)
    stats = asyncio.get_running_loop().create_task(
        run_shard_stats(redis, worker.streams, keys.GROUP, config.metrics.shard_stats_interval))
    shopify_stop, shopify = asyncio.Event(), None
    workflow_stop, workflow = asyncio.Event(), None
    developer_stop, developer = asyncio.Event(), []
    try:
        await _retry_redis(worker.setup)
        log.info("worker %s persisting %d shards", worker.consumer, config.engine.shards)
        # Revenue sync (docs/revenue.md): its own task and HTTP session; persistence never waits on it.
        from engine.shopify.runner import run_in_worker

        shopify = asyncio.get_running_loop().create_task(run_in_worker(config, pool, redis, shopify_stop))
        # Auto-assignment, reminders, presence sweeper (docs/workflow.md): own consumer group and loops.
        from engine.assignment import run_workflow

        workflow = asyncio.get_running_loop().create_task(run_workflow(config, pool, redis, workflow_stop))
        # Webhooks, exports, organisation purges (docs/webhooks.md, docs/rest-api.md): own tasks and sessions.
        from engine.erasure import run_org_purges
        from engine.export import run_exports
        from engine.webhooks import run_webhooks

        developer = [asyncio.get_running_loop().create_task(job) for job in (
            run_webhooks(config, pool, redis, developer_stop), run_exports(config, pool, developer_stop),
            run_org_purges(config, pool, redis, developer_stop))]
        task = asyncio.get_running_loop().create_task(worker.run())
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            # SIGTERM: finish and acknowledge the batch in hand, then stop.
            worker.stopping = True
            try:
                await asyncio.wait_for(asyncio.shield(task), STOP_GRACE_SECONDS + 5)
            except (asyncio.CancelledError, asyncio.TimeoutError):
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            raise
    finally:
        stats.cancel()
        await asyncio.gather(stats, return_exceptions=True)
        if developer:
            developer_stop.set()
            _, late = await asyncio.wait(developer, timeout=STOP_GRACE_SECONDS)
            for job in late:
                job.cancel()   # an export in progress goes back to pending for another worker
            await asyncio.gather(*developer, return_exceptions=True)
        if workflow is not None:
            workflow_stop.set()
            await asyncio.gather(workflow, return_exceptions=True)
        if shopify is not None:
            shopify_stop.set()
            await asyncio.gather(shopify, return_exceptions=True)
        await pool.close()
        await redis.aclose()
        if reader is not None:
            await reader.aclose()
        await stop_metrics_server(httpd)


async def _retry_redis(fn) -> None:
    delay = 0.2
    while True:
        try:
            return await fn()
        except _REDIS_DOWN:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def _pool_when_ready(config: Config):
    """A worker may start while PostgreSQL is down: it waits instead of crashing."""
    delay = 0.2
    while True:
        try:
            return await create_pool_from_config(config)
        except Exception as exc:
            if not _is_transient(exc):
                raise
            log.warning("PostgreSQL unavailable at start (%s); waiting", type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
