"""A TCP proxy that can cut a server away and bring it back (fault tests, no mocks)."""

from __future__ import annotations

import asyncio


class CuttableProxy:
    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port: int | None = None
        self.server: asyncio.AbstractServer | None = None
        self.pipes: set[asyncio.Task] = set()
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port or 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Stop listening and drop every open connection, like a server that went down."""
        self.server.close()
        for w in list(self.writers):
            w.transport.abort()
        for t in list(self.pipes):
            t.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)
        await self.server.wait_closed()

    async def _client(self, reader, writer) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, up_writer}
        tasks = [asyncio.get_running_loop().create_task(self._pipe(reader, up_writer)),
                 asyncio.get_running_loop().create_task(self._pipe(up_reader, writer))]
        self.pipes.update(tasks)
        for t in tasks:
            t.add_done_callback(self.pipes.discard)

    async def _pipe(self, reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.writers.discard(writer)
            writer.transport.abort()

    async def close(self) -> None:
        if self.server is not None and self.server.is_serving():
            await self.cut()
