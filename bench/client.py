"""A lean websocket client for load generation: one asyncio Protocol per socket.

A load generator must cost much less CPU than the server it measures; the full `websockets`
client is correct but heavy per frame.  This one does the RFC 6455 client side only as far
as the bench needs: handshake, masked text frames out (C masking from websockets.speedups),
unmasked frames in, ping -> pong, close.  Frames are handed over as bytes.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct

from websockets.speedups import apply_mask


class BenchSocket(asyncio.Protocol):
    def __init__(self, on_frame, on_close):
        self.on_frame = on_frame
        self.on_close = on_close
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.handshaken = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.handshaken.done():
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end])
            del self.buf[:end + 4]
            if not head.startswith(b"HTTP/1.1 101"):
                self.handshaken.set_exception(ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace")))
                self.transport.close()
                return
            self.handshaken.set_result(None)
        buf = self.buf
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            n = b1 & 0x7F
            pos = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n = struct.unpack_from("!H", buf, 2)[0]
                pos = 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n = struct.unpack_from("!Q", buf, 2)[0]
                pos = 10
            if len(buf) < pos + n:
                return
            payload = bytes(buf[pos:pos + n])
            del buf[:pos + n]
            opcode = b0 & 0x0F
            if opcode == 1 or opcode == 2:
                self.on_frame(payload)
            elif opcode == 9:
                self._write(0xA, payload)
            elif opcode == 8:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                self._write(0x8, payload[:2])
                self.transport.close()

    def connection_lost(self, exc) -> None:
        if not self.handshaken.done():
            self.handshaken.set_exception(ConnectionError("closed during handshake"))
        self.on_close(self.close_code or 1006)

    def _write(self, opcode: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        self.transport.write(head + mask + apply_mask(payload, mask))

    def send(self, payload: bytes) -> None:
        self._write(0x1, payload)

    def close(self) -> None:
        self.close_code = self.close_code or 1000
        self._write(0x8, struct.pack("!H", 1000))
        if self.transport is not None:
            self.transport.close()


async def connect(host: str, port: int, on_frame, on_close=lambda code: None) -> BenchSocket:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(lambda: BenchSocket(on_frame, on_close), host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    proto.transport.write(
        f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    await proto.handshaken
    return proto
