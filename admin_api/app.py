"""Application factory and `serve` entry point of the admin API.

Resources live in ``cleanup_ctx`` (opened in order at start-up, closed in reverse): the
PostgreSQL pool, Redis (throttles) and the engine client (control events), the encryptor and
gateway token issuer, the bcrypt thread pool, the
mail outbox (and in development the SMTP catch-all), the background job queue.  Routes come
from the declaration tables in ``ROUTE_TABLES``; see docs/admin-api.md.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from admin_api import audit, auth, devmail, invites, members, mfa, organisations, security, sessions, system
from admin_api import shopify
from admin_api.billing import routes as billing
from admin_api import static
from admin_api import api_keys, apps, exports, socket_tokens, webhooks, widget_session
from admin_api.rest import contacts, conversations, messages, tags
from admin_api import assignment, availability, reminders, search
from admin_api.jobs import JobQueue
from admin_api.keys import (CATCH_ALL, CONFIG, DB, ENCRYPTOR, ENGINE, HASHER, JOBS, LIMITS, OUTBOX, REDIS, RESOLVERS,
                            SECURITY, THROTTLE, TOKENS)
from admin_api.middleware import boundary
from admin_api.passwords import PasswordHasher
from admin_api.routing import RouteTable, install
from admin_api.security import SecurityPolicy, tls_context
from admin_api.throttle import Limits, Throttle
from convot.config import Config
from convot.crypto import Encryptor
from convot.db import create_pool_from_config
from convot.mail import CatchAllServer, Outbox, SmtpSender
from convot.tokens import TokenIssuer
from engine.client import EngineClient, create_redis

log = logging.getLogger("convot.admin_api")

# Every resource module's route table.  A new module (issue 5: apps, API keys, webhooks...)
# adds its `routes` here.
ROUTE_TABLES: tuple[RouteTable, ...] = (
    system.routes, security.routes, auth.routes, sessions.routes, mfa.routes, organisations.routes,
    members.routes, invites.routes, audit.routes,
    shopify.routes, billing.routes,
    static.routes,
    apps.routes, widget_session.routes, socket_tokens.routes, api_keys.routes, conversations.routes, messages.routes,
    contacts.routes, tags.routes, webhooks.routes, exports.routes,
    assignment.routes, availability.routes, reminders.routes, search.routes,
)
DEVELOPMENT_ROUTE_TABLES: tuple[RouteTable, ...] = (devmail.routes,)

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def runs_catch_all(config: Config) -> bool:
    return config.smtp.catch_all == "auto" and config.admin_api.development and config.smtp.host in LOOPBACK


async def _database(app: web.Application):
    app[DB] = await create_pool_from_config(app[CONFIG])
    yield
    await app[DB].close()


async def _redis(app: web.Application):
    config = app[CONFIG]
    client = create_redis(config)
    app[REDIS] = client
    app[THROTTLE] = Throttle(client)
    engine = EngineClient(config, redis=client, pool=app[DB])
    await engine.start()
    app[ENGINE] = engine
    yield
    await engine.close()
    await client.aclose()


async def _secrets(app: web.Application):
    config = app[CONFIG]
    app[ENCRYPTOR] = Encryptor.from_config(config)
    app[TOKENS] = TokenIssuer(config)
    hasher = PasswordHasher(config.auth.bcrypt_cost)
    await hasher.start()
    app[HASHER] = hasher
    yield
    await asyncio.get_running_loop().run_in_executor(None, hasher.close)


async def _mail(app: web.Application):
    config = app[CONFIG]
    server = None
    if runs_catch_all(config):
        server = CatchAllServer(config.smtp.host, config.smtp.port, folder=config.data_dir / "mail")
        try:
            await server.start()
        except OSError:
            # another process holds the port (a second `convot up`?): mail goes to whatever listens there
            log.warning("catch-all SMTP port in use: not starting the catch-all", extra={"port": config.smtp.port})
            server = None
        else:
            log.info("catch-all SMTP server: mails shown at /dev/mail", extra={"port": server.port})
    app[CATCH_ALL] = server
    outbox = Outbox(SmtpSender(config.smtp))
    outbox.start()
    app[OUTBOX] = outbox
    yield
    await outbox.close()
    if server is not None:
        await server.close()


async def _jobs(app: web.Application):
    jobs = JobQueue()
    jobs.start()
    app[JOBS] = jobs
    yield
    await jobs.close()


def create_app(config: Config) -> web.Application:
    # aiohttp's access log would write query strings (search terms, tokens in links) to the logs;
    # our own request log line (middleware) names the route template instead.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # widget_cors is outermost: it sees the final answer, errors included (widget session only)
    app = web.Application(middlewares=[widget_session.widget_cors, boundary],
                          client_max_size=config.admin_api.max_body_bytes)
    app[CONFIG] = config
    app[SECURITY] = SecurityPolicy.from_config(config)
    app[LIMITS] = Limits.from_config(config)
    # authentication chain: first resolver that recognises the credentials wins
    app[RESOLVERS] = [sessions.session_resolver, api_keys.api_key_resolver]
    # jobs close before mail (they enqueue mails), mail before the pool and Redis they use
    app.cleanup_ctx.extend([_database, _redis, _secrets, _mail, _jobs])
    app.cleanup_ctx.extend([billing.billing_context, shopify.shopify_context])  # plans + Stripe client; Shopify HTTP
    app.cleanup_ctx.append(static.static_files)  # inbox, widget and demo files, read off the loop
    tables = ROUTE_TABLES + (DEVELOPMENT_ROUTE_TABLES if runs_catch_all(config) else ())
    install(app, tables)
    return app


async def serve(config: Config) -> None:
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    ssl_context = tls_context(config.admin_api.tls_cert, config.admin_api.tls_key) if config.admin_api.tls_cert else None
    site = web.TCPSite(runner, config.admin_api.host, config.admin_api.port, reuse_port=True, ssl_context=ssl_context)
    await site.start()
    log.info("admin API listening", extra={"port": config.admin_api.port, "tls": ssl_context is not None})
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
