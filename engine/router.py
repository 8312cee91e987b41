"""ShardRouter: sends made during one event-loop turn go to Redis in one pipeline.

``append()`` is synchronous and returns a future.  The first send of a turn starts a flush
that first yields once (so every frame handled in this turn can join), then sends one
``append.lua`` call per shard in one pipeline.  While a flush is in flight, new sends wait
for the next one: flushes are serialised, so two sends of one socket are appended in the
order they were made, and batches grow with load (a natural Nagle without a timer).

A caller's future resolves with its :class:`Ack` only after Redis has executed the script,
i.e. the message is in the stream (AOF, fsync every second).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine import keys
from engine.errors import EngineError
from engine.scripts import Scripts

log = logging.getLogger("convot.engine.router")

MAX_PER_CALL = 256  # sends per append.lua call: bounds how long one script holds Redis


@dataclass(slots=True)
class AppendRequest:
    conversation_id: str
    mode: str                 # 'e' existing, 'n' new conversation + message, 'c' create only
    org_id: str
    contact_id: str           # '' for members: no ownership check
    app_id: str
    channel: str
    client_msg_id: str        # '' = none
    type: str
    head: bytes
    mid: bytes
    tail: bytes
    message_id: str
    actor: bytes

    def args(self) -> tuple:
        return (self.conversation_id, self.mode, self.org_id, self.contact_id, self.app_id, self.channel,
                self.client_msg_id, self.type, self.head, self.mid, self.tail, self.message_id, self.actor)


@dataclass(frozen=True, slots=True)
class Ack:
    conversation_id: str
    id: str
    seq: int
    created_at: int
    duplicate: bool
    client_msg_id: str | None


class ShardRouter:
    def __init__(self, redis, scripts: Scripts, *, shards: int, idem_ttl: int, recent_cap: int, meta_ttl: int,
                 metrics=None, conn=None):
        self.redis = redis
        # Flushes are serialised, so one dedicated connection carries them all: the lean RESP
        # client of engine/resp.py when given (less per-call overhead than a redis-py pipeline).
        self.conn = conn
        self.scripts = scripts
        self.shards = shards
        self._fixed = (idem_ttl, recent_cap, meta_ttl)
        self._pending: dict[int, list[tuple[AppendRequest, asyncio.Future]]] = {}
        self._task: asyncio.Task | None = None
        self._closed = False
        self.metrics = metrics

    def shard_of(self, org_id: str) -> int:
        return keys.shard_of(org_id, self.shards)

    def append(self, req: AppendRequest) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        if self._closed:
            fut.set_exception(EngineError("unavailable", "router closed"))
            return fut
        self._pending.setdefault(self.shard_of(req.org_id), []).append((req, fut))
        if self._task is None:
            self._task = loop.create_task(self._flush_loop())
        return fut

    async def _flush_loop(self) -> None:
        try:
            await asyncio.sleep(0)  # let the rest of this loop turn add its sends
            while self._pending:
                batch, self._pending = self._pending, {}
                await self._flush(batch)
        finally:
            self._task = None
            if self._pending and not self._closed:
                self._task = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush(self, batch: dict[int, list[tuple[AppendRequest, asyncio.Future]]]) -> None:
        calls = []
        for shard, items in batch.items():
            for i in range(0, len(items), MAX_PER_CALL):
                calls.append((shard, items[i:i + MAX_PER_CALL]))
        try:
            results = await self._execute(calls)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning("append failed: Redis unavailable (%s)", type(exc).__name__)
            for _, items in calls:
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(EngineError("unavailable", "Redis unavailable"))
            return
        except asyncio.CancelledError:
            for _, items in calls:
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(EngineError("unavailable", "router closed"))
            raise
        if self.metrics:
            self.metrics.append_batch.observe(sum(len(items) for _, items in calls))
        for (shard, items), result in zip(calls, results):
            if isinstance(result, Exception):
                log.error("append.lua failed on shard %d: %s", shard, result)
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(EngineError("internal"))
                continue
            for (req, fut), reply in zip(items, result):
                if fut.done():
                    continue
                status = reply[0]
                if status == b"ok":
                    fut.set_result(Ack(reply[5].decode(), reply[2].decode(), reply[1], reply[3], bool(reply[4]),
                                       req.client_msg_id or None))
                else:
                    fut.set_exception(_RefusedAppend(status.decode()))

    async def _execute(self, calls) -> list:
        sha = self.scripts.append.sha
        for attempt in (1, 2):
            commands = []
            for shard, items in calls:
                args = [*self._fixed, len(items)]
                for req, _ in items:
                    args.extend(req.args())
                commands.append((keys.stream(shard), args))
            if self.conn is not None:
                results = await self.conn.pipeline([("EVALSHA", sha, 1, key, *args) for key, args in commands])
                results = [_as_error(r) for r in results]
            else:
                pipe = self.redis.pipeline(transaction=False)
                for key, args in commands:
                    pipe.evalsha(sha, 1, key, *args)
                results = await pipe.execute(raise_on_error=False)
            if attempt == 1 and any(isinstance(r, NoScriptError) for r in results):
                await self.scripts.load(self.redis)  # Redis restarted and lost its script cache
                continue
            return results
        return results

    async def idle(self) -> None:
        """Wait until every queued send has been flushed and answered."""
        while self._task is not None:
            task = self._task
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.done():
                    raise

    async def close(self) -> None:
        """Flush what is queued (drain), then refuse new appends."""
        await self.idle()
        self._closed = True


def _as_error(reply):
    """engine/resp.py returns Redis errors as values; map NOSCRIPT like redis-py does."""
    from engine.resp import ReplyError

    if isinstance(reply, ReplyError):
        return NoScriptError(str(reply)) if str(reply).startswith("NOSCRIPT") else RuntimeError(str(reply))
    return reply


class _RefusedAppend(Exception):
    """append.lua refused one send: 'cold' (meta not in Redis), 'not_found', 'conflict'."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code
