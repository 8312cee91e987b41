"""A real gateway (in this process, on a free port) and a small JSON websocket client."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from convot.tokens import TokenIssuer
from gateway import server as gateway_server
from tests.engine.seed import seed_tenant


class Client:
    def __init__(self, ws):
        self.ws = ws
        self.frames: list[dict] = []

    async def send(self, **frame) -> None:
        await self.ws.send(orjson.dumps(frame).decode())

    async def recv(self, timeout: float = 5.0) -> dict:
        return orjson.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def expect(self, type_: str, timeout: float = 5.0, **match) -> dict:
        """The next frame of ``type_`` (matching ``match``), earlier unclaimed ones first;
        frames of other types are kept in ``frames``."""
        for i, frame in enumerate(self.frames):
            if frame.get("type") == type_ and all(frame.get(k) == v for k, v in match.items()):
                return self.frames.pop(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.recv(max(0.01, deadline - loop.time()))
            if frame.get("type") == type_ and all(frame.get(k) == v for k, v in match.items()):
                return frame
            self.frames.append(frame)

    async def closed(self, timeout: float = 5.0) -> int:
        """Read until the server closes; the close code."""
        try:
            while True:
                self.frames.append(orjson.loads(await asyncio.wait_for(self.ws.recv(), timeout)))
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else 1006

    async def quiet(self, seconds: float = 0.3) -> list[dict]:
        """Frames that arrive within ``seconds``."""
        out = []
        try:
            while True:
                out.append(await self.recv(seconds))
        except (asyncio.TimeoutError, TimeoutError):
            return out

    async def close(self) -> None:
        await self.ws.close()


class Harness:
    def __init__(self, config, url, issuer):
        self.config = config
        self.url = url
        self.issuer = issuer
        self.clients: list[Client] = []

    async def raw(self, **kw) -> Client:
        ws = await connect(self.url, compression=None, **kw)
        c = Client(ws)
        self.clients.append(c)
        return c

    async def connect(self, token: str, **kw) -> tuple[Client, dict]:
        c = await self.raw(**kw)
        await c.send(type="authenticate", token=token)
        return c, await c.expect("ready")

    async def shopper(self, tenant, i: int = 0):
        token, _ = self.issuer.widget_token(tenant.org, tenant.contacts[i], tenant.app)
        return (await self.connect(token))[0]

    async def member(self, tenant, user: str, role: str = "agent"):
        token, _ = self.issuer.member_token(tenant.org, user, role, 0)
        return (await self.connect(token))[0]


async def start_gateway(config):
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    task = loop.create_task(gateway_server.serve(config, ready=ready))
    done, _ = await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    return task


async def stop_gateway(task):
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
def gateway_config(config):
    return config


@asynccontextmanager
async def running_gateway(config):
    """A gateway of ``config`` in this process and a Harness of clients for it; on exit every
    client is closed and the gateway drained."""
    task = await start_gateway(config)
    h = Harness(config, f"ws://127.0.0.1:{config.gateway.port}/", TokenIssuer(config))
    try:
        yield h
    finally:
        for c in h.clients:
            try:
                await c.close()
            except Exception:
                pass
        await stop_gateway(task)


@pytest.fixture
async def gw(gateway_config):
    async with running_gateway(gateway_config) as h:
        yield h


@pytest.fixture
async def tenant(owner_db):
    return await seed_tenant(owner_db)
