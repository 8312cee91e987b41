"""A minimal RESP2 client for the two hot stream reads: the gateways' XREAD and the
workers' XREADGROUP.

redis-py parses a reply element by element through awaits on a stream reader; a stream reply
of a few hundred entries has ~20 elements per entry, and that parsing was the largest single
CPU cost of a busy gateway and of a busy worker (profiles in docs/performance.md).  This
client reads the whole reply into one buffer and parses it with a plain loop over
``bytes.find`` (``parse_reply``, pure, tested alone).  It speaks only what the readers need:
AUTH, SELECT, CLIENT ID, XREAD and XREADGROUP.  Everything else stays on redis-py.
"""

from __future__ import annotations

import asyncio
from urllib.parse import unquote, urlparse


class Incomplete(Exception):
    """The buffer does not hold a whole reply yet."""


class ReplyError(Exception):
    """Redis answered with an error (-ERR ...)."""


def parse_reply(buf: bytes | bytearray, pos: int = 0):
    """One RESP2 value from ``buf`` at ``pos`` -> (value, next position).  Raises Incomplete."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise Incomplete
    kind = buf[pos]
    if kind == 36:                                  # $ bulk string
        n = int(buf[pos + 1:end])
        if n < 0:
            return None, end + 2
        start = end + 2
        stop = start + n
        if len(buf) < stop + 2:
            raise Incomplete
        return bytes(buf[start:stop]), stop + 2
    if kind == 42:                                  # * array
        n = int(buf[pos + 1:end])
        if n < 0:
            return None, end + 2
        pos = end + 2
        items = []
        append = items.append
        for _ in range(n):
            value, pos = parse_reply(buf, pos)
            append(value)
        return items, pos
    if kind == 58:                                  # : integer
        return int(buf[pos + 1:end]), end + 2
    if kind == 43:                                  # + simple string
        return bytes(buf[pos + 1:end]), end + 2
    if kind == 45:                                  # - error
        return ReplyError(bytes(buf[pos + 1:end]).decode(errors="replace")), end + 2
    raise ValueError(f"unexpected RESP type byte {kind!r}")


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


def encode_command(*args) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        if not isinstance(a, bytes):
            a = str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)


class StreamReaderConnection:
    """One connection; ``await xread(positions, count, block)``; reconnects on demand."""

    def __init__(self, url: str):
        u = urlparse(url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 6379
        self.password = unquote(u.password) if u.password else None
        self.username = unquote(u.username) if u.username else None
        self.db = int((u.path or "/0").lstrip("/") or 0)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.buf = bytearray()
        self.client_id_value: int | None = None

    async def _call(self, *args):
        self.writer.write(encode_command(*args))
        return await self._reply()

    async def _reply(self):
        while True:
            if self.buf:
                try:
                    value, pos = parse_reply(self.buf)
                except Incomplete:
                    pass
                else:
                    del self.buf[:pos]
                    if isinstance(value, ReplyError):
                        raise value
                    return value
            data = await self.reader.read(262144)
            if not data:
                raise ConnectionError("Redis closed the connection")
            self.buf += data

    async def connect(self) -> None:
        await self.close()
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.buf = bytearray()
        if self.password:
            if self.username:
                await self._call("AUTH", self.username, self.password)
            else:
                await self._call("AUTH", self.password)
        if self.db:
            await self._call("SELECT", self.db)
        self.client_id_value = await self._call("CLIENT", "ID")

    async def xread(self, positions: dict[bytes, bytes], count: int, block: int) -> list:
        if self.writer is None:
            await self.connect()
        keys = list(positions)
        try:
            reply = await self._call("XREAD", "COUNT", count, "BLOCK", block, "STREAMS", *keys,
                                     *[positions[k] for k in keys])
        except (OSError, asyncio.IncompleteReadError, ReplyError) as exc:
            await self.close()
            raise ConnectionError(f"stream reader: {type(exc).__name__}") from None
        return xread_entries(reply)

    async def xreadgroup(self, group: str, consumer: str, streams: dict, count: int, block: int) -> list:
        """XREADGROUP ... STREAMS k1 k2 ... id1 id2 ... ; the shape redis-py returns."""
        if self.writer is None:
            await self.connect()
        keys = list(streams)
        try:
            reply = await self._call("XREADGROUP", "GROUP", group, consumer, "COUNT", count, "BLOCK", block,
                                     "STREAMS", *keys, *[streams[k] for k in keys])
        except (OSError, asyncio.IncompleteReadError, ReplyError) as exc:
            await self.close()
            raise ConnectionError(f"stream reader: {type(exc).__name__}: {exc}") from None
        return xread_entries(reply)

    async def pipeline(self, commands: list[tuple], timeout: float = 5.0) -> list:
        """Send every command at once, read every reply; a Redis error is returned in place
        (a ReplyError), a connection problem raises ConnectionError/TimeoutError."""
        if self.writer is None:
            await self.connect()
        try:
            self.writer.write(b"".join(encode_command(*c) for c in commands))
            return await asyncio.wait_for(self._replies(len(commands)), timeout)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
            await self.close()
            if isinstance(exc, asyncio.TimeoutError):
                raise
            raise ConnectionError(f"resp pipeline: {type(exc).__name__}") from None

    async def _replies(self, n: int) -> list:
        out = []
        while len(out) < n:
            pos = 0
            while len(out) < n and pos < len(self.buf):
                try:
                    value, pos = parse_reply(self.buf, pos)
                except Incomplete:
                    break
                out.append(value)
            del self.buf[:pos]
            if len(out) < n:
                data = await self.reader.read(262144)
                if not data:
                    raise ConnectionError("Redis closed the connection")
                self.buf += data
        return out

    async def client_id(self) -> int:
        """This connection's id, for CLIENT UNBLOCK from another connection."""
        if self.writer is None:
            await self.connect()
        return self.client_id_value

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except (OSError, ConnectionError):
                pass
        self.reader = self.writer = None
        self.client_id_value = None

    async def aclose(self) -> None:
        await self.close()
