"""Typed application keys: everything the admin API keeps on its ``web.Application``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from convot.config import Config

if TYPE_CHECKING:  # imported for annotations only, to keep this module dependency-free
    from admin_api.principal import Principal

Resolver = Callable[[web.Request], Awaitable["Principal | None"]]

CONFIG = web.AppKey("config", Config)
DB = web.AppKey("db", Any)                    # asyncpg.Pool (services' role)
REDIS = web.AppKey("redis", Any)              # redis.asyncio client
ENCRYPTOR = web.AppKey("encryptor", Any)      # convot.crypto.Encryptor
HASHER = web.AppKey("hasher", Any)            # admin_api.passwords.PasswordHasher
THROTTLE = web.AppKey("throttle", Any)        # admin_api.throttle.Throttle
LIMITS = web.AppKey("limits", Any)            # admin_api.throttle.Limits
OUTBOX = web.AppKey("outbox", Any)            # convot.mail.Outbox
CATCH_ALL = web.AppKey("catch_all", Any)      # convot.mail.CatchAllServer | None (development)
ENGINE = web.AppKey("engine", Any)            # engine.client.EngineClient (control events, messages)
TOKENS = web.AppKey("tokens", Any)            # convot.tokens.TokenIssuer (gateway tokens)
RESOLVERS = web.AppKey("resolvers", list)     # list[Resolver]: authentication chain, first match wins
ROUTES = web.AppKey("routes", list)           # list[routing.Route]: every declared route of this app
SECURITY = web.AppKey("security", Any)        # admin_api.security.SecurityPolicy
JOBS = web.AppKey("jobs", Any)              # admin_api.jobs.JobQueue

# Per-request storage
CALL = web.RequestKey("call", Any)            # admin_api.call.Call of the running route
