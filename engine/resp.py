"""A lean Redis connection for the hot paths: the gateways' XREAD, the workers' XREADGROUP
and the router's pipelined appends.

redis-py costs an await per reply element and a Python object per command; a stream reply
of a few hundred entries has ~20 elements per entry.  This connection is an
``asyncio.Protocol`` whose ``data_received`` feeds hiredis' C parser (``hiredis.Reader``,
incremental: a reply split over many TCP reads is parsed once, not re-parsed from its start)
and hands complete replies to the waiting calls in order.  Commands are encoded by
``hiredis.pack_command``.  It speaks only what those paths need: AUTH, SELECT, CLIENT ID,
XREAD, XREADGROUP and pipelines of arbitrary commands.  Everything else stays on redis-py
(which uses the same hiredis parser when it is installed).
"""

from __future__ import annotations

import asyncio
from collections import deque
from urllib.parse import unquote, urlparse

import hiredis


class ReplyError(Exception):
    """Redis answered with an error (-ERR ...); returned in place inside pipelines."""


def encode_command(*args) -> bytes:
    return hiredis.pack_command(args)


def xread_entries(reply) -> list:
    """XREAD reply -> [(stream, [(id, {field: value})])], the shape redis-py returns."""
    out = []
    for stream, entries in reply or ():
        items = []
        for entry_id, flat in entries:
            if flat is None:                        # an entry deleted while pending
                items.append((entry_id, {}))
                continue
            it = iter(flat)
            items.append((entry_id, dict(zip(it, it))))
        out.append((stream, items))
    return out


class _Waiter:
    __slots__ = ("remaining", "replies", "future")

    def __init__(self, n: int, future: asyncio.Future):
        self.remaining = n
        self.replies: list = []
        self.future = future


class _RespProtocol(asyncio.Protocol):
    """Replies come back in command order: each goes to the oldest waiter still expecting one."""

    def __init__(self):
        self.parser = hiredis.Reader(replyError=ReplyError)
        self.waiters: deque[_Waiter] = deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        parser.feed(data)
        waiters = self.waiters
        while waiters:
            try:
                reply = parser.gets()
            except hiredis.ProtocolError as exc:
                self._fail(ConnectionError(f"Redis protocol error: {exc}"))
                self.transport.close()
                return
            if reply is False:
                return
            w = waiters[0]
            w.replies.append(reply)
            w.remaining -= 1
            if w.remaining == 0:
                waiters.popleft()
                if not w.future.done():
                    w.future.set_result(w.replies)

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._fail(ConnectionError("Redis closed the connection"))

    def _fail(self, exc: Exception) -> None:
        while self.waiters:
            w = self.waiters.popleft()
            if not w.future.done():
                w.future.set_exception(exc)

    def send(self, data: bytes, n: int) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        if self.closed:
            fut.set_exception(ConnectionError("Redis connection closed"))
            return fut
        self.waiters.append(_Waiter(n, fut))
        self.transport.write(data)
        return fut


class StreamReaderConnection:
    """One connection; reconnects on demand.  A call that fails or times out closes it, so a
    late reply can never be taken for the answer to a later call."""

    def __init__(self, url: str):
        u = urlparse(url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 6379
        self.password = unquote(u.password) if u.password else None
        self.username = unquote(u.username) if u.username else None
        self.db = int((u.path or "/0").lstrip("/") or 0)
        self.protocol: _RespProtocol | None = None
        self.client_id_value: int | None = None

    async def _call(self, *args):
        reply = (await self.protocol.send(encode_command(*args), 1))[0]
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    async def connect(self) -> None:
        await self.close()
        loop = asyncio.get_running_loop()
        _, self.protocol = await loop.create_connection(_RespProtocol, self.host, self.port)
        try:
            if self.password:
                if self.username:
                    await self._call("AUTH", self.username, self.password)
                else:
                    await self._call("AUTH", self.password)
            if self.db:
                await self._call("SELECT", self.db)
            self.client_id_value = await self._call("CLIENT", "ID")
        except BaseException:
            await self.close()
            raise

    async def _read(self, *args) -> list:
        if self.protocol is None or self.protocol.closed:
            await self.connect()
        try:
            reply = await self._call(*args)
        except (OSError, ReplyError) as exc:
            await self.close()
            raise ConnectionError(f"stream reader: {type(exc).__name__}: {exc}") from None
        except BaseException:
            await self.close()
            raise
        return xread_entries(reply)

    async def xread(self, positions: dict[bytes, bytes], count: int, block: int) -> list:
        keys = list(positions)
        return await self._read("XREAD", "COUNT", count, "BLOCK", block, "STREAMS", *keys,
                                *[positions[k] for k in keys])

    async def xreadgroup(self, group: str, consumer: str, streams: dict, count: int, block: int | None) -> list:
        """XREADGROUP ... STREAMS k1 k2 ... id1 id2 ... ; the shape redis-py returns."""
        keys = list(streams)
        wait = () if block is None else ("BLOCK", block)
        return await self._read("XREADGROUP", "GROUP", group, consumer, "COUNT", count, *wait,
                                "STREAMS", *keys, *[streams[k] for k in keys])

    async def pipeline(self, commands: list[tuple], timeout: float = 5.0) -> list:
        """Send every command at once, read every reply; a Redis error is returned in place
        (a ReplyError), a connection problem raises ConnectionError/TimeoutError."""
        if self.protocol is None or self.protocol.closed:
            await self.connect()
        data = b"".join([hiredis.pack_command(c) for c in commands])
        try:
            return await asyncio.wait_for(self.protocol.send(data, len(commands)), timeout)
        except TimeoutError:
            await self.close()
            raise
        except OSError as exc:
            await self.close()
            raise ConnectionError(f"resp pipeline: {type(exc).__name__}") from None
        except BaseException:
            await self.close()
            raise

    async def client_id(self) -> int:
        """This connection's id, for CLIENT UNBLOCK from another connection."""
        if self.protocol is None or self.protocol.closed:
            await self.connect()
        return self.client_id_value

    async def close(self) -> None:
        protocol, self.protocol = self.protocol, None
        self.client_id_value = None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
            protocol._fail(ConnectionError("Redis connection closed"))

    async def aclose(self) -> None:
        await self.close()
