"""One consumer of one Redis consumer group on every shard stream.

Three consumers read every shard stream, each through its own group and at its own pace:
persistence (``persist``, engine/worker.py), webhooks (``webhooks``, engine/webhooks.py) and
auto-assignment (``assignment``, engine/assignment.py).  The reading mechanics are the same
for all three and live here, in :class:`GroupReader`; what an entry means, and when it is
done, stays with each consumer:

* ``create()``: XGROUP CREATE (MKSTREAM) on every stream; a group that exists (BUSYGROUP)
  is fine.  The start id is the consumer's: ``"0"`` for persistence (everything not yet
  persisted), ``"$"`` for the others (what happens from now on, never the history).
* ``read(block_ms)``: XREADGROUP ``>`` over every stream with BLOCK.  A partial batch waits
  ``linger`` seconds (``engine.batch_linger_ms``) and reads once more, without BLOCK, for the
  rest of the batch: under load that is one read, one transaction and one XACK for many
  entries instead of many small ones.
* ``own_pending()``: XREADGROUP ``0``: what this consumer name read and has not acknowledged
  (a previous run of it).
* ``claim()`` / ``claim_if_due()``: XAUTOCLAIM of entries idle longer than ``claim_idle_ms``
  (their consumer died), with one cursor per stream so a long pending list is walked across
  calls.  Entries trimmed (deleted) while pending are never returned: Redis 7 drops them
  from the pending list itself; Redis 6.2 answers nil in their place, without the id, and
  keeps them pending, so they are found (XPENDING, XRANGE) and acknowledged here.  A claim
  that found none costs one XAUTOCLAIM per stream.
* ``ack(entries)`` / ``add_acks(pipe, entries)``: XACK, one command per stream, in one
  pipeline of its own or in the caller's (the worker sends its acks with its dead letters
  and ``persisted.lua`` calls).
* A lost group: Redis answers NOGROUP when it restarted without its data (or the stream or
  group was removed).  ``read()``, ``own_pending()`` and ``claim()`` then log one warning (the
  group's name, nothing else), create the group again (``create()``: the same start id as at
  start-up; the consumer's ``on_recreate`` first, if given) and return what they have:
  nothing, or the part of a batch read before the group went.  The next call reads from the
  new group.  XACK on a lost group is no error (Redis answers 0): acknowledging needs nothing.

An entry is ``(stream: str, entry_id: bytes, fields: dict)``.  ``redis`` is redis-py's client,
or engine/cluster.py's on Redis Cluster (one read per stream there, pipelines per node).
``connection``, when given, is the lean engine/resp.py connection that serves the XREADGROUP
reads instead (the worker's hot path); everything else goes through ``redis``.  Other errors
are the caller's to handle: Redis unavailable (also while creating a lost group again), a
refused command.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable

from redis.exceptions import ResponseError

Entry = tuple[str, bytes, dict]

log = logging.getLogger("convot.engine.groups")
# redis-py answers NOGROUP with a ResponseError; engine/resp.py's reads with a ConnectionError
_NOGROUP_CARRIERS = (ResponseError, ConnectionError)


def consumer_name() -> str:
    """This process's consumer name in a group: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


def is_nogroup(exc: BaseException) -> bool:
    """Redis answered NOGROUP: the stream or its group is gone (Redis restarted without its data).
    redis-py raises it as a ResponseError; engine/resp.py's reads wrap it in a ConnectionError."""
    return "NOGROUP" in str(exc)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def flatten(reply) -> list[Entry]:
    """An XREADGROUP reply (redis-py's or engine/resp.py's shape) -> entries."""
    out: list[Entry] = []
    for stream, items in reply or ():
        stream = _text(stream)
        out.extend((stream, entry_id, fields or {}) for entry_id, fields in items)
    return out


class GroupReader:
    def __init__(self, redis, group: str, streams: Iterable[str], *, start_id: str, count: int,
                 claim_idle_ms: int, linger: float = 0.0, consumer: str | None = None, connection=None,
                 claim_limit: int | None = None, claim_every: float | None = None,
                 on_claimed: Callable[[str, int], None] | None = None,
                 on_recreate: Callable[[], Awaitable[None]] | None = None):
        self.redis = redis
        self.connection = connection
        self.group = group
        self.streams = list(streams)
        self.start_id = start_id
        self.count = count                        # entries per read (and per stream per claim)
        self.claim_idle_ms = claim_idle_ms
        self.linger = linger                      # seconds a partial batch waits for more
        self.consumer = consumer or consumer_name()
        self.claim_limit = claim_limit            # stop claiming once this many entries are in hand
        # claim_if_due(): a quarter of the idle threshold, so an orphan waits at most 1.25 x it
        self.claim_every = claim_idle_ms / 4000 if claim_every is None else claim_every
        self.on_claimed = on_claimed              # (stream, entries taken over), for metrics and logs
        # run before a lost group is created again: what else Redis lost (the worker's Lua scripts)
        self.on_recreate = on_recreate
        self._claim_cursor: dict[str, str] = {}
        self._last_claim = 0.0

    async def create(self) -> None:
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(stream, self.group, id=self.start_id, mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _recreate(self) -> None:
        """NOGROUP: the group is gone (Redis restarted without its data); create it again, from
        the same start id as at start-up, and claim from the start of its (new) pending list."""
        log.warning("consumer group %s missing; creating it again", self.group)
        self._claim_cursor.clear()
        if self.on_recreate is not None:
            await self.on_recreate()
        await self.create()

    # ---- reading ---------------------------------------------------------------------------

    async def _xreadgroup(self, position: str, count: int, block: int | None) -> list[Entry]:
        source = self.connection or self.redis
        try:
            reply = await source.xreadgroup(self.group, self.consumer, {s: position for s in self.streams},
                                            count=count, block=block)
        except _NOGROUP_CARRIERS as exc:
            if not is_nogroup(exc):
                raise
            await self._recreate()
            return []
        return flatten(reply)

    async def read(self, block_ms: int, *, linger: bool = True) -> list[Entry]:
        """New entries: up to ``count``, waiting up to ``block_ms`` for the first; a partial batch
        lingers (unless ``linger`` is False, e.g. while stopping) and reads once more.  A lost
        group is created again: nothing, or what the first read got, is returned."""
        entries = await self._xreadgroup(">", self.count, block_ms)
        if entries and len(entries) < self.count and linger and self.linger:
            await asyncio.sleep(self.linger)
            entries += await self._xreadgroup(">", self.count - len(entries), None)
        return entries

    async def own_pending(self) -> list[Entry]:
        """Entries this consumer read and has not acknowledged, oldest first (up to ``count``)."""
        return await self._xreadgroup("0", self.count, None)

    # ---- taking over ---------------------------------------------------------------------------

    def claim_soon(self) -> None:
        """Let the next claim_if_due() claim (after an error: what failed may be pending elsewhere)."""
        self._last_claim = 0.0

    async def claim_if_due(self) -> list[Entry]:
        now = time.monotonic()
        if now - self._last_claim < self.claim_every:
            return []
        self._last_claim = now
        return await self.claim()

    async def claim(self) -> list[Entry]:
        """Entries idle longer than ``claim_idle_ms`` on any consumer, now ours.  A lost group
        is created again: what the streams before it gave is returned."""
        out: list[Entry] = []
        try:
            await self._claim_into(out)
        except ResponseError as exc:
            if not is_nogroup(exc):
                raise
            await self._recreate()
        return out

    async def _claim_into(self, out: list[Entry]) -> None:
        for stream in self.streams:
            start = self._claim_cursor.get(stream, "0-0")
            reply = await self.redis.xautoclaim(stream, self.group, self.consumer, self.claim_idle_ms,
                                                start_id=start, count=self.count)
            claimed = reply[1]
            cursor = self._claim_cursor[stream] = _text(reply[0])
            found = [(entry_id, fields) for entry_id, fields in claimed if entry_id is not None and fields]
            if len(found) < len(claimed):
                await self._ack_deleted(stream, start, cursor, {entry_id for entry_id, _ in found})
            out.extend((stream, entry_id, fields) for entry_id, fields in found)
            if claimed and self.on_claimed is not None:
                self.on_claimed(stream, len(claimed))
            if self.claim_limit is not None and len(out) >= self.claim_limit:
                break

    async def _ack_deleted(self, stream: str, start: str, cursor: str, found: set) -> None:
        """Acknowledge the entries of ours between ``start`` and ``cursor`` (the range one
        XAUTOCLAIM call went through) that no longer exist in the stream: nobody can ever
        handle them, and a pending entry holds trimming back."""
        low, high = start, "+" if cursor == "0-0" else "(" + cursor
        candidates: list[bytes] = []
        while True:
            rows = await self.redis.xpending_range(stream, self.group, min=low, max=high, count=self.count,
                                                   consumername=self.consumer)
            candidates += [r["message_id"] for r in rows if r["message_id"] not in found]
            if len(rows) < self.count:
                break
            low = "(" + _text(rows[-1]["message_id"])
        if not candidates:
            return
        pipe = self.redis.pipeline(transaction=False)
        for entry_id in candidates:
            pipe.xrange(stream, min=entry_id, max=entry_id, count=1)
        gone = [entry_id for entry_id, there in zip(candidates, await pipe.execute()) if not there]
        if gone:
            await self.redis.xack(stream, self.group, *gone)

    # ---- acknowledging -------------------------------------------------------------------------

    def add_acks(self, pipe, entries: Iterable[tuple]) -> None:
        """Queue XACKs for ``entries`` (``(stream, entry_id, ...)``) on ``pipe``, one per stream."""
        by_stream: dict[str, list] = {}
        for entry in entries:
            by_stream.setdefault(entry[0], []).append(entry[1])
        for stream, ids in by_stream.items():
            pipe.xack(stream, self.group, *ids)

    async def ack(self, entries: Iterable[tuple]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        self.add_acks(pipe, entries)
        if len(pipe):
            await pipe.execute()
