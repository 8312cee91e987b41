"""WebSocket server connections on websockets' Sans-I/O protocol: one asyncio.Protocol per socket.

The RFC 6455 work -- the opening handshake, frame parsing and size limits, masking checks,
ping -> pong, the closing handshake -- is done by ``websockets.server.ServerProtocol``, the
library's own protocol implementation.  This module is the I/O around it, shaped for a gateway
that holds thousands of mostly idle sockets and fans frames out to them:

* no task until the handshake succeeded, then exactly one (the handler); keep-alive, the
  opening timeout and the closing timeout are timer handles, not tasks;
* received messages wait in a short list (reading pauses at ``max_queue``), ``recv()`` creates
  a future only when it has to wait;
* the owner writes ready-made frames to ``transport`` itself (the gateway frames each event
  once for all its recipients); control frames come from the protocol.

``websockets.asyncio.server`` does the same job for general use with two tasks per connection,
an assembler, a logger adapter and several futures: 0.8 ms of CPU per connect here against
0.35 ms for this shape (both measured with the bench's client, docs/performance.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from websockets.frames import Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

log = logging.getLogger("convot.gateway")

_OPEN = State.OPEN
_CONNECTING = State.CONNECTING
_TEXT, _BINARY, _CONT, _PONG = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.PONG
_ws_logger = logging.getLogger("websockets.server")


class SocketClosed(Exception):
    """The socket is closing or closed: no more messages will be received."""


@dataclass(frozen=True)
class Settings:
    """What every socket of one listener shares."""

    handler: Callable[["WebSocket"], Awaitable[None]]   # runs once the handshake succeeded
    max_size: int = 2**20                  # largest message (across fragments); larger: close 1009
    max_queue: int = 4                     # received messages held before reading pauses
    open_timeout: float = 10.0             # TCP accept -> handshake done
    ping_interval: float | None = 20.0     # a ping this often; no pong before the next one: close 1011
    close_timeout: float = 2.0             # close frame sent -> TCP closed, else aborted
    write_high_water: int = 64 * 1024      # drain() waits while the transport holds more than this
    # A plain HTTP answer instead of the upgrade, e.g. health checks: path -> (status, body).
    plain_http: dict[str, tuple[int, str]] | None = None
    sockets: set = field(default_factory=set)   # every socket accepted and not yet gone


class WebSocket(asyncio.Protocol):
    """One server-side socket.  Subclass it to carry per-socket state (``__slots__``)."""

    __slots__ = ("settings", "transport", "protocol", "inbox", "waiter", "fragments", "reading_paused",
                 "drain_waiter", "timer", "ping_outstanding", "task", "lost", "gone", "refusing")

    def __init__(self, settings: Settings):
        self.settings = settings
        self.transport: asyncio.Transport | None = None
        self.protocol = ServerProtocol(max_size=settings.max_size, logger=_ws_logger)
        self.inbox: list[bytes] = []
        self.waiter: asyncio.Future | None = None
        self.fragments: list[bytes] | None = None
        self.reading_paused = False
        self.drain_waiter: asyncio.Future | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.ping_outstanding = False
        self.task: asyncio.Task | None = None
        self.lost: asyncio.Future | None = None        # created by wait_lost() only
        self.gone = False                              # connection_lost() was called
        self.refusing: str | None = None               # set by the server while it shuts down

    # -- receiving -----------------------------------------------------------------------------------
    async def recv(self, timeout: float | None = None) -> bytes:
        """The next message's bytes (text or binary); SocketClosed once the socket is closing
        and everything received before is consumed; TimeoutError after ``timeout`` seconds."""
        inbox = self.inbox
        while not inbox:
            if self.protocol.state is not _OPEN:
                raise SocketClosed()
            loop = asyncio.get_running_loop()
            waiter = self.waiter = loop.create_future()
            handle = loop.call_later(timeout, _time_out, waiter) if timeout is not None else None
            try:
                await waiter
            finally:
                self.waiter = None
                if handle is not None:
                    handle.cancel()
        data = inbox.pop(0)
        if self.reading_paused and len(inbox) <= self.settings.max_queue // 2:
            self.reading_paused = False
            self.transport.resume_reading()
        return data

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- sending ---------------------------------------------------------------------------------------
    async def drain(self) -> None:
        """Wait until the transport's buffer is below the high-water mark (or the socket is gone)."""
        if self.gone or self.transport.get_write_buffer_size() <= self.settings.write_high_water:
            return
        if self.drain_waiter is None or self.drain_waiter.done():
            self.drain_waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self.drain_waiter)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; the TCP connection is aborted if the peer has not
        finished it within ``close_timeout``.  Idempotent; never waits."""
        state = self.protocol.state
        if state is _OPEN:
            self.protocol.send_close(code, reason)
            self._send_protocol_data()
            self._expect_close()
        elif state is _CONNECTING and self.transport is not None:
            self.transport.abort()
        self._wake()

    async def wait_lost(self) -> None:
        """Wait until the TCP connection is gone."""
        if self.gone or self.transport is None:
            return
        if self.lost is None:
            self.lost = asyncio.get_running_loop().create_future()
        await asyncio.shield(self.lost)

    # -- asyncio.Protocol --------------------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.settings.sockets.add(self)
        high = self.settings.write_high_water
        transport.set_write_buffer_limits(high, high // 4)
        self.timer = asyncio.get_running_loop().call_later(self.settings.open_timeout, self._open_timed_out)

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        protocol.receive_data(data)
        events = protocol.events_received()
        for event in events:
            if event.__class__ is Request:
                self._handshake(event)
                continue
            opcode = event.opcode
            if opcode is _TEXT or opcode is _BINARY:
                if event.fin:
                    self._message(opcode, event.data)
                else:
                    self.fragments = [opcode, event.data]
            elif opcode is _CONT:
                fragments = self.fragments
                if fragments is None:            # the protocol already failed the connection
                    continue
                fragments.append(event.data)
                if event.fin:
                    self.fragments = None
                    self._message(fragments[0], b"".join(fragments[1:]))
            elif opcode is _PONG:
                self.ping_outstanding = False
        self._send_protocol_data()
        if protocol.state is not _OPEN and protocol.state is not _CONNECTING:
            self._expect_close()
            self._wake()

    def _message(self, opcode, data: bytes) -> None:
        if opcode is _TEXT:
            try:
                data.decode()
            except UnicodeDecodeError:
                self.protocol.fail(1007, "invalid UTF-8")
                return
        inbox = self.inbox
        inbox.append(data)
        if len(inbox) == 1:
            self._wake()
        elif len(inbox) >= self.settings.max_queue and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> None:
        self.protocol.receive_eof()
        self._send_protocol_data()
        self._wake()
        return None                       # the transport closes itself

    def connection_lost(self, exc) -> None:
        self.protocol.receive_eof()       # idempotent: the state is CLOSED from here on
        self.gone = True
        self.settings.sockets.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._wake()
        for fut in (self.drain_waiter, self.lost):
            if fut is not None and not fut.done():
                fut.set_result(None)

    def pause_writing(self) -> None:
        pass                              # drain() looks at the buffer size itself

    def resume_writing(self) -> None:
        fut = self.drain_waiter
        if fut is not None and not fut.done():
            fut.set_result(None)

    # -- internals -------------------------------------------------------------------------------------
    def _handshake(self, request: Request) -> None:
        protocol = self.protocol
        plain = self.settings.plain_http
        answer = plain.get(request.path) if plain else None
        if answer is not None:
            response = protocol.reject(*answer)
        elif self.refusing is not None:
            response = protocol.reject(503, self.refusing)
        else:
            response = protocol.accept(request)
        protocol.send_response(response)
        if response.status_code != 101:
            return
        if self.timer is not None:
            self.timer.cancel()
        interval = self.settings.ping_interval
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(interval, self._keepalive) if interval else None
        self.task = loop.create_task(self.settings.handler(self))

    def _send_protocol_data(self) -> None:
        transport = self.transport
        for data in self.protocol.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                try:
                    transport.write_eof()     # the server ends the TCP connection first (RFC 6455 7.1.1)
                except (OSError, RuntimeError):
                    transport.close()
            else:
                transport.close()

    def _expect_close(self) -> None:
        """The closing handshake has started: the peer has close_timeout to finish it."""
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(self.settings.close_timeout, self._abort)

    def _abort(self) -> None:
        self.timer = None
        if self.transport is not None:
            self.transport.abort()

    def _open_timed_out(self) -> None:
        self.timer = None
        if self.protocol.state is _CONNECTING:
            self.transport.abort()

    def _keepalive(self) -> None:
        self.timer = None
        if self.protocol.state is not _OPEN:
            return
        if self.ping_outstanding:
            self.protocol.fail(1011, "keepalive ping timeout")
            self._send_protocol_data()
            self._expect_close()
            self._wake()
            return
        self.ping_outstanding = True
        self.protocol.send_ping(os.urandom(4))
        self._send_protocol_data()
        self.timer = asyncio.get_running_loop().call_later(self.settings.ping_interval, self._keepalive)


def _time_out(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class Listener:
    """The listening socket and every socket it accepted (for a graceful shutdown)."""

    def __init__(self, server: asyncio.AbstractServer, sockets: set):
        self.server = server
        self.sockets = sockets

    def stop_accepting(self, reason: str = "Server is shutting down.\n") -> None:
        self.server.close()
        for ws in self.sockets:
            ws.refusing = reason          # handshakes still in progress are answered 503

    async def close(self, code: int, reason: str, timeout: float) -> None:
        """Close every socket with ``code``; wait up to ``timeout`` for them, abort the rest,
        and wait for their handlers."""
        self.stop_accepting()
        sockets = list(self.sockets)
        for ws in sockets:
            ws.close(code, reason)
        waits = [asyncio.ensure_future(ws.wait_lost()) for ws in sockets]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=timeout)
            for ws in sockets:
                if not ws.gone:
                    ws.transport.abort()
            for fut in pending:
                fut.cancel()
        tasks = [ws.task for ws in sockets if ws.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)


async def serve(factory: Callable[[], WebSocket], settings: Settings, host: str, port: int, *,
                backlog: int = 4096) -> Listener:
    """Listen on ``host:port`` (SO_REUSEPORT: several processes may share it); ``factory``
    makes the socket objects (built on ``settings``)."""
    server = await asyncio.get_running_loop().create_server(factory, host, port, reuse_port=True, backlog=backlog)
    return Listener(server, settings.sockets)
