"""Redis Cluster support: the engine's Redis calls, unchanged, on a cluster (redis.cluster = true).

Every key of shard N carries the hash tag ``{N}`` (engine/keys.py), so one shard is one hash
slot on one node, and the per-shard Lua scripts stay atomic.  What redis-py's cluster client
does not do for us, :class:`ConvotRedisCluster` adds, so callers (router, worker, gateway,
workflow, webhooks) need no cluster branches:

* ``pipeline()`` -- redis-py refuses EVALSHA (our appends) and PUBLISH in cluster pipelines.
  :class:`NodePipeline` puts each command into a plain pipeline to its key's node, runs the
  nodes' pipelines concurrently and returns the replies in the caller's order.  A command
  answered MOVED/ASK (slots being moved) is sent again once after the slot map is refreshed.
* ``mget`` of keys in different slots (revocation records) -> ``mget_nonatomic``.
* ``xreadgroup`` over several shard streams (one command cannot span slots): one XREADGROUP per
  stream in one NodePipeline round, and a short pause instead of BLOCK when all are empty
  (adds at most ``POLL_MS`` to persistence, never to live delivery).
* ``xread`` with BLOCK over several streams (the gateway's fan-out reader): one blocking reader
  per stream on its own connection to the stream's node, feeding one queue; the caller sees
  the usual reply.  ``client_id``/``client_unblock`` (used to wake the reader when a new shard is
  added) wake these readers instead.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("convot.engine.cluster")

POLL_MS = 50                      # pause of a multi-stream XREADGROUP that found nothing
READER_QUEUE = 64                 # replies buffered per multiplexed reader before its streams wait
_READERS: "weakref.WeakSet[StreamMultiplexer]" = weakref.WeakSet()


def is_cluster(redis) -> bool:
    return isinstance(redis, RedisCluster)


def _key_of(name: str, args: tuple, kwargs: dict):
    if name in ("evalsha", "eval"):
        return args[2]
    if name == "execute_command":            # execute_command("MGET", key, ...) etc.
        return args[1]
    if name == "xreadgroup":
        streams = args[2] if len(args) > 2 else kwargs["streams"]
        return next(iter(streams))
    if name == "xread":
        streams = args[0] if args else kwargs["streams"]
        return next(iter(streams))
    if args:
        return args[0]
    return next(iter(kwargs.values()))


class NodePipeline:
    """``pipeline(transaction=False)`` on a cluster: per-node plain pipelines, replies in order."""

    def __init__(self, cluster: "ConvotRedisCluster"):
        self.cluster = cluster
        self.commands: list[tuple[str, tuple, dict]] = []

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)

        def add(*args, **kwargs):
            self.commands.append((name, args, kwargs))
            return self
        return add

    def __len__(self) -> int:
        return len(self.commands)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.commands = []

    def reset(self) -> None:
        self.commands = []

    async def _run(self, indexes: list[int], results: list) -> None:
        groups: dict[str, tuple[object, list[int]]] = {}
        for i in indexes:
            name, args, kwargs = self.commands[i]
            node = self.cluster.get_node_from_key(_key_of(name, args, kwargs))
            groups.setdefault(node.name, (node, []))[1].append(i)

        async def on_node(node, idx: list[int]) -> None:
            pipe = self.cluster.node_client(node).pipeline(transaction=False)
            for i in idx:
                name, args, kwargs = self.commands[i]
                getattr(pipe, name)(*args, **kwargs)
            try:
                replies = await pipe.execute(raise_on_error=False)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                replies = [exc] * len(idx)
            for i, reply in zip(idx, replies):
                results[i] = reply
        await asyncio.gather(*(on_node(node, idx) for node, idx in groups.values()))

    async def execute(self, raise_on_error: bool = True) -> list:
        await self.cluster.initialize()
        results: list = [None] * len(self.commands)
        await self._run(list(range(len(self.commands))), results)
        moved = [i for i, r in enumerate(results) if isinstance(r, ResponseError) and str(r).startswith(("MOVED", "ASK"))]
        if moved:          # not executed by the node that answered: refresh the slot map, send again once
            await self.cluster.refresh_slots()
            await self._run(moved, results)
        self.commands = []
        if raise_on_error:
            for r in results:
                if isinstance(r, Exception):
                    raise r
        if any(isinstance(r, (RedisConnectionError, RedisTimeoutError, OSError)) for r in results):
            # a node unreachable: the caller's usual "Redis unavailable" handling applies
            raise next(r for r in results if isinstance(r, (RedisConnectionError, RedisTimeoutError, OSError)))
        return results


class StreamMultiplexer:
    """Blocking XREAD over streams of several slots: one reader task per stream."""

    def __init__(self, cluster: "ConvotRedisCluster"):
        self.cluster = cluster
        self.tasks: dict[object, asyncio.Task] = {}
        self.queue: asyncio.Queue = asyncio.Queue(READER_QUEUE)
        self.wake = asyncio.Event()
        _READERS.add(self)

    async def read(self, streams: dict, count: int | None, block: int) -> list:
        for stream, position in streams.items():
            if stream not in self.tasks:
                self.tasks[stream] = asyncio.get_running_loop().create_task(self._reader(stream, position, count))
        for stream in [s for s in self.tasks if s not in streams]:
            self.tasks.pop(stream).cancel()
        self.wake.clear()
        got: dict = {}
        try:
            first = await asyncio.wait_for(self._next_or_wake(), block / 1000)
        except asyncio.TimeoutError:
            return []
        if first is not None:
            got.setdefault(first[0], []).extend(first[1])
        while not self.queue.empty():
            stream, entries = self.queue.get_nowait()
            got.setdefault(stream, []).extend(entries)
        return [[stream, entries] for stream, entries in got.items() if stream in self.tasks]

    async def _next_or_wake(self):
        getter = asyncio.ensure_future(self.queue.get())
        waker = asyncio.ensure_future(self.wake.wait())
        try:
            done, _ = await asyncio.wait({getter, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waker.cancel()
            if not getter.done():
                getter.cancel()
        if getter.done() and not getter.cancelled():
            return getter.result()
        return None

    async def _reader(self, stream, position, count) -> None:
        client = None
        backoff = 0.1
        try:
            while True:
                try:
                    if client is None:
                        await self.cluster.initialize()
                        node = self.cluster.get_node_from_key(stream)
                        client = self.cluster.node_client(node, dedicated=True)
                    reply = await client.xread({stream: position}, count=count, block=1000)
                    backoff = 0.1
                except (RedisConnectionError, RedisTimeoutError, OSError, ResponseError) as exc:
                    log.warning("cluster stream reader: %s", type(exc).__name__)
                    if client is not None:
                        await client.aclose()
                        client = None
                    if isinstance(exc, ResponseError):
                        await self.cluster.refresh_slots()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                for _stream, entries in reply or ():
                    if entries:
                        position = entries[-1][0]
                        await self.queue.put((stream, entries))
        finally:
            if client is not None:
                await client.aclose()

    async def close(self) -> None:
        tasks = list(self.tasks.values())
        self.tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class ConvotRedisCluster(RedisCluster):
    """redis-py's cluster client with the engine's multi-slot patterns made to work (above)."""

    def setup_nodes(self, url: str, max_connections: int) -> "ConvotRedisCluster":
        parts = urlsplit(url)
        self._node_auth = {"username": parts.username or None, "password": parts.password or None}
        self._node_max = max_connections
        self._node_clients: dict[str, aioredis.Redis] = {}
        self._dedicated: list[aioredis.Redis] = []
        self._mux: StreamMultiplexer | None = None
        return self

    def node_client(self, node, *, dedicated: bool = False) -> aioredis.Redis:
        """A plain client of one node: shared (pooled) or dedicated (a blocking reader's)."""
        if dedicated:
            client = aioredis.Redis(host=node.host, port=node.port, single_connection_client=True, **self._node_auth)
            return client
        client = self._node_clients.get(node.name)
        if client is None:
            pool = aioredis.BlockingConnectionPool(host=node.host, port=node.port, max_connections=self._node_max,
                                                   timeout=10, **self._node_auth)
            client = self._node_clients[node.name] = aioredis.Redis.from_pool(pool)
        return client

    async def refresh_slots(self) -> None:
        try:
            await self.nodes_manager.initialize()
        except Exception as exc:  # the next command tries again
            log.warning("cluster slot refresh failed: %s", type(exc).__name__)

    def pipeline(self, transaction=None, shard_hint=None) -> NodePipeline:
        if transaction:
            raise ValueError("Convot does not use MULTI/EXEC pipelines on a cluster")
        return NodePipeline(self)

    async def mget(self, *keys, **kwargs):
        return await self.mget_nonatomic(*keys)

    async def xreadgroup(self, groupname, consumername, streams, count=None, block=None, noack=False):
        if len(streams) == 1:
            return await super().xreadgroup(groupname, consumername, streams, count=count, block=block, noack=noack)
        pipe = self.pipeline()
        for stream, position in streams.items():
            pipe.xreadgroup(groupname, consumername, {stream: position}, count=count, noack=noack)
        out = [item for reply in await pipe.execute() if reply for item in reply]
        if not out and block:
            await asyncio.sleep(min(block, POLL_MS) / 1000)
        return out

    async def xread(self, streams, count=None, block=None):
        if block is None:
            if len(streams) == 1:
                return await super().xread(streams, count=count)
            pipe = self.pipeline()
            for stream, position in streams.items():
                pipe.xread({stream: position}, count=count)
            return [item for reply in await pipe.execute() if reply for item in reply]
        if self._mux is None:
            self._mux = StreamMultiplexer(self)
        return await self._mux.read(streams, count, block)

    async def client_id(self, **kwargs) -> int:
        return 0          # no single connection to name: client_unblock wakes the multiplexed readers

    async def client_unblock(self, client_id, error=False, **kwargs) -> bool:
        for reader in list(_READERS):
            reader.wake.set()
        return True

    async def aclose(self) -> None:
        if self._mux is not None:
            await self._mux.close()
        for client in self._node_clients.values():
            await client.aclose()
        self._node_clients.clear()
        await super().aclose()


def create_cluster(url: str, max_connections: int, **kw) -> ConvotRedisCluster:
    kw.pop("single_connection_client", None)       # one logical client; readers get their own connections
    return ConvotRedisCluster.from_url(url, **kw).setup_nodes(url, max_connections)
