"""ShardRouter: sends made during one event-loop turn go to Redis in one pipeline.

``append()`` is synchronous and returns a future.  The sends are queued in a
:class:`~engine.batch.TurnBatcher`: the first send of a turn starts a flush that yields once
(so every frame handled in this turn can join), then the flush groups them by shard and sends
one ``append.lua`` call per shard (at most MAX_PER_CALL sends each) in one pipeline.  Flushes
are serialised, so two sends of one socket are appended in the order they were made, and
batches grow with load.

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
from engine.batch import TurnBatcher
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
        self._batcher = TurnBatcher(self._append_batch, max_items=None,
                                    cancelled=lambda: EngineError("unavailable", "router closed"))
        self._closed = False
        self.metrics = metrics

    def shard_of(self, org_id: str) -> int:
        return keys.shard_of(org_id, self.shards)

    def append(self, req: AppendRequest) -> asyncio.Future:
        if self._closed:
            fut = asyncio.get_running_loop().create_future()
            fut.set_exception(EngineError("unavailable", "router closed"))
            return fut
        return self._batcher.submit(req)

    async def _append_batch(self, reqs: list[AppendRequest]) -> list:
        """One flush: the sends grouped by shard, one script call per shard (and per
        MAX_PER_CALL sends), all in one pipeline; an Ack or an exception per send."""
        by_shard: dict[int, list[int]] = {}      # shard -> indexes into reqs, in order
        for i, req in enumerate(reqs):
            by_shard.setdefault(self.shard_of(req.org_id), []).append(i)
        calls = [(shard, idx[i:i + MAX_PER_CALL]) for shard, idx in by_shard.items()
                 for i in range(0, len(idx), MAX_PER_CALL)]
        try:
            results = await self._execute([(shard, [reqs[i] for i in idx]) for shard, idx in calls])
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning("append failed: Redis unavailable (%s)", type(exc).__name__)
            return [EngineError("unavailable", "Redis unavailable") for _ in reqs]
        if self.metrics:
            self.metrics.append_batch.observe(len(reqs))
        answers: list = [None] * len(reqs)        # an Ack or an exception per send
        for (shard, idx), result in zip(calls, results):
            if isinstance(result, Exception):
                log.error("append.lua failed on shard %d: %s", shard, result)
                for i in idx:
                    answers[i] = EngineError("internal")
                continue
            for i, reply in zip(idx, result):
                if reply[0] == b"ok":
                    answers[i] = Ack(reply[5].decode(), reply[2].decode(), reply[1], reply[3], bool(reply[4]),
                                     reqs[i].client_msg_id or None)
                else:
                    answers[i] = _RefusedAppend(reply[0].decode())
        return answers

    async def _execute(self, calls) -> list:
        sha = self.scripts.append.sha
        for attempt in (1, 2):
            commands = []
            for shard, items in calls:
                args = [*self._fixed, len(items)]
                for req in items:
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
        await self._batcher.idle()

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
