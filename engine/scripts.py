"""The Lua scripts of engine/lua, loaded once per connection pool (SCRIPT LOAD) and run with
EVALSHA; after a Redis restart (NOSCRIPT) they are loaded again transparently."""

from __future__ import annotations

import hashlib
from pathlib import Path

from redis.exceptions import NoScriptError

LUA_DIR = Path(__file__).parent / "lua"
NAMES = ("append", "update", "delete_message", "hydrate", "persisted", "recent", "trim")


class Script:
    __slots__ = ("name", "source", "sha")

    def __init__(self, name: str, source: str):
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


def load_sources() -> dict[str, Script]:
    lib = (LUA_DIR / "lib.lua").read_text()
    return {name: Script(name, lib + "\n" + (LUA_DIR / f"{name}.lua").read_text()) for name in NAMES}


class Scripts:
    """``await scripts.run(redis, "append", keys, args)``; ``scripts.append`` etc. for pipelines."""

    def __init__(self):
        self.by_name = load_sources()

    def __getattr__(self, name: str) -> Script:
        try:
            return self.__dict__["by_name"][name]
        except KeyError:
            raise AttributeError(name) from None

    async def load(self, redis) -> None:
        for script in self.by_name.values():
            sha = await redis.script_load(script.source)
            assert sha == script.sha, f"{script.name}: SHA mismatch"

    async def run(self, redis, name: str, keys: list[str], args: list) -> object:
        script = self.by_name[name]
        try:
            return await redis.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.load(redis)
            return await redis.evalsha(script.sha, len(keys), *keys, *args)
