"""Application factory and `serve` entry point of the admin API."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from convot.config import Config
from convot.db import create_pool_from_config

log = logging.getLogger("convot.admin_api")

CONFIG = web.AppKey("config", Config)
DB = web.AppKey("db", object)


async def _database(app: web.Application):
    app[DB] = await create_pool_from_config(app[CONFIG])
    yield
    await app[DB].close()


async def healthz(request: web.Request) -> web.Response:
    async with request.app[DB].acquire() as conn:
        await conn.fetchval("SELECT 1")
    return web.json_response({"status": "ok"})


async def metrics(_request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(config: Config) -> web.Application:
    app = web.Application()
    app[CONFIG] = config
    app.cleanup_ctx.append(_database)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(config: Config) -> None:
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.admin_api.host, config.admin_api.port, reuse_port=True)
    await site.start()
    log.info("admin API listening", extra={"port": config.admin_api.port})
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
