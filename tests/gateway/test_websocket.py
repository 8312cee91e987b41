"""gateway/websocket.py: the gateway's socket layer against real clients on a free port.

The websockets client (a full RFC 6455 peer) and raw TCP sockets (peers that misbehave:
never finish the handshake, never answer a ping or a close) talk to a listener whose
handler is written per test.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from convot.embedded import free_port
from gateway import websocket
from gateway.protocol import text_frame


class Sock(websocket.WebSocket):
    __slots__ = ()


@asynccontextmanager
async def listening(handler, **settings):
    s = websocket.Settings(handler=handler, **settings)
    port = free_port()
    listener = await websocket.serve(lambda: Sock(s), s, "127.0.0.1", port)
    try:
        yield port, listener
    finally:
        await listener.close(1001, "test over", 2.0)


async def echo(ws: Sock) -> None:
    try:
        while True:
            data = await ws.recv()
            ws.transport.write(text_frame(data))
    except websocket.SocketClosed:
        pass


async def raw_handshake(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", (0x80 if fin else 0) | opcode, 0x80 | len(payload)) + mask + body


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    return b0 & 0x0F, await reader.readexactly(n)


async def test_messages_in_order_whole_and_fragmented():
    async with listening(echo) as (port, _):
        async with connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
            for i in range(20):
                await ws.send(f"m{i}")
            await ws.send(["frag", "mented"])            # three frames: text + continuation
            await ws.send(b"binary")
            got = [await ws.recv() for _ in range(22)]
    assert got == [f"m{i}" for i in range(20)] + ["fragmented", "binary"]


async def test_reading_pauses_and_nothing_is_lost_while_the_handler_is_busy():
    go = asyncio.Event()
    received: list[bytes] = []

    async def slow(ws: Sock) -> None:
        await go.wait()
        try:
            while True:
                received.append(await ws.recv())
        except websocket.SocketClosed:
            pass

    async with listening(slow, max_queue=4) as (port, _):
        async with connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
            for i in range(200):
                await ws.send(f"{i:04d}" + "x" * 2000)
            go.set()
            await ws.send("last")
            for _ in range(200):
                if received and received[-1] == b"last":
                    break
                await asyncio.sleep(0.02)
    assert [r[:4] for r in received[:-1]] == [f"{i:04d}".encode() for i in range(200)]
    assert received[-1] == b"last"


async def test_invalid_utf8_text_closes_with_1007_and_oversize_with_1009():
    async with listening(echo, max_size=1000) as (port, _):
        reader, writer = await raw_handshake(port)
        writer.write(masked(0x1, b"\xff\xfe not utf-8"))
        opcode, payload = await read_frame(reader)
        assert opcode == 0x8 and struct.unpack("!H", payload[:2])[0] == 1007
        writer.close()
        async with connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
            await ws.send("x" * 1001)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd.code == 1009


async def test_a_peer_that_never_answers_pings_is_closed_with_1011_and_one_that_does_stays():
    async with listening(echo, ping_interval=0.2) as (port, _):
        async with connect(f"ws://127.0.0.1:{port}/", compression=None, ping_interval=None) as good:
            reader, writer = await raw_handshake(port)
            frames = []
            while True:                       # a ping, then (unanswered) the close
                opcode, payload = await asyncio.wait_for(read_frame(reader), 10)
                frames.append(opcode)
                if opcode == 0x8:
                    break
            assert frames[0] == 0x9 and struct.unpack("!H", payload[:2])[0] == 1011
            await good.send("still here")                  # the websockets client answered every ping
            assert await good.recv() == "still here"
        writer.close()


async def test_a_handshake_never_finished_or_a_close_never_answered_ends_the_connection():
    async def closer(ws: Sock) -> None:
        ws.close(4000, "bye")

    async with listening(closer, open_timeout=0.2, close_timeout=0.2) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 10) == b""          # silent peer: cut after open_timeout
        writer.close()
        reader, writer = await raw_handshake(port)
        opcode, payload = await read_frame(reader)
        assert opcode == 0x8 and struct.unpack("!H", payload[:2])[0] == 4000
        try:                                    # never answered: the server ends the TCP connection
            assert await asyncio.wait_for(reader.read(), 10) == b""
        except ConnectionResetError:
            pass
        writer.close()


async def test_plain_http_answer_and_shutdown_refuses_then_closes_everyone():
    handled = []

    async def tracked(ws: Sock) -> None:
        handled.append(ws)
        await echo(ws)

    async with listening(tracked, plain_http={"/healthz": (200, "ok\n")}) as (port, listener):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 10)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\nok\n")
        writer.close()
        clients = [await connect(f"ws://127.0.0.1:{port}/", compression=None) for _ in range(3)]
        for c in clients:
            await c.send("hi")
            assert await c.recv() == "hi"
        await listener.close(4000, "server_shutdown", 5.0)
        for c in clients:
            with pytest.raises(ConnectionClosed) as closed:
                await c.recv()
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4000, "server_shutdown")
        assert all(ws.task.done() for ws in handled) and not listener.sockets
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
