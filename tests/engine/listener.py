"""A subscriber to one organisation's ephemeral channel (presence, notifications), for workflow tests."""

from __future__ import annotations

import asyncio

import orjson

from engine import keys


class Listener:
    """Everything published on one organisation's ephemeral channel, decoded: (audience, frame)."""

    def __init__(self, redis_client, config, org: str):
        self.pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
        self.channel = keys.ephemeral_channel(keys.shard_of(org, config.engine.shards))
        self.org = org.encode()

    async def __aenter__(self) -> "Listener":
        await self.pubsub.subscribe(self.channel)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.pubsub.aclose()

    async def frames(self, wait: float = 0.5) -> list[tuple[bytes, dict]]:
        out = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while loop.time() < deadline:
            msg = await self.pubsub.get_message(timeout=max(0.01, deadline - loop.time()))
            if msg and msg["type"] == "message":
                org, _contact, audience, _sender, frame = msg["data"].split(b"|", 4)
                if org == self.org:
                    out.append((audience, orjson.loads(frame)))
        return out

    async def wait_for(self, frame_type: str, timeout: float = 5.0) -> tuple[bytes, dict]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            for audience, frame in await self.frames(min(0.2, max(0.01, deadline - loop.time()))):
                if frame.get("type") == frame_type:
                    return audience, frame
        raise AssertionError(f"no {frame_type} frame within {timeout}s")
