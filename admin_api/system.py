"""Health, metrics and the OpenAPI document."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from admin_api import keys
from admin_api.call import Call
from admin_api.openapi import build_document
from admin_api.routing import RouteTable
from admin_api.schemas import Array, Object, Schema, String
from convot.metrics import watch_pool

routes = RouteTable(tag="system")


class Health(Schema):
    status = String(example="ok")


class OpenApiDocument(Schema):
    """The OpenAPI 3.1 document of this API."""

    openapi = String()
    info = Object()
    servers = Array(Object())
    paths = Object(max_keys=100000)
    components = Object()


@routes.route("GET", "/healthz", permission="public", response=Health, summary="Liveness: PostgreSQL and Redis answer")
async def healthz(call: Call) -> Health:
    async with call.app[keys.DB].acquire() as conn:
        await conn.fetchval("SELECT 1")
    await call.app[keys.REDIS].ping()
    return Health(status="ok")


@routes.route("GET", "/metrics", permission="public", content_type="text/plain", summary="Prometheus metrics")
async def metrics(call: Call) -> web.Response:
    # this process's pools (re-registering replaces, so a test's second app is reported, not both)
    watch_pool("postgres", "main", call.app[keys.DB])
    watch_pool("redis", "main", call.app[keys.REDIS])
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.route("GET", "/v1/openapi.json", permission="public", response=OpenApiDocument,
              summary="This document")
async def openapi_json(call: Call) -> OpenApiDocument:
    return OpenApiDocument(**build_document(call.app[keys.ROUTES], call.config))
