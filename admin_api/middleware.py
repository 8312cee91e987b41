"""The one boundary between the pipeline and HTTP: request ids, access log, error envelope,
security headers, metrics."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
import traceback

import orjson
from aiohttp import web
from prometheus_client import Counter, Histogram

from admin_api import keys
from admin_api.errors import ApiError, status_code_for
from convot.logs import request_id

log = logging.getLogger("convot.admin_api")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

REQUESTS = Counter("convot_admin_api_requests_total", "Admin API answers", ["route", "method", "status"])
LATENCY = Histogram("convot_admin_api_request_seconds", "Admin API answer time by route template and status",
                    ["route", "method", "status"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))


def error_response(error: ApiError, status: int | None = None) -> web.Response:
    response = web.Response(body=orjson.dumps(error.envelope()), status=status or error.status,
                            content_type="application/json")
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


def _route_label(request: web.Request) -> str:
    call = request.get(keys.CALL)
    if call is not None:
        return call.route.path
    return "unmatched"


@web.middleware
async def boundary(request: web.Request, handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-Id", "")
    rid = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)
    token = request_id.set(rid)
    started = time.perf_counter()
    try:
        try:
            response = await handler(request)
        except ApiError as exc:
            response = error_response(exc)
        except web.HTTPException as exc:
            response = error_response(ApiError(status_code_for(exc.status)), exc.status)
            if "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the boundary: nothing internal reaches the client
            # The exception's message (and the source lines) may quote values -- SQL parameters,
            # input: only its type and the frames' locations are logged.
            frames = " < ".join(f"{f.filename.rsplit('/', 2)[-2:][-1]}:{f.lineno} {f.name}"
                                for f in reversed(traceback.extract_tb(exc.__traceback__)))
            log.error("unhandled error", extra={"error": type(exc).__name__, "trace": frames})
            response = error_response(ApiError("internal_error"))
        for name, value in request.app[keys.SECURITY].headers().items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Request-Id"] = rid
        elapsed = time.perf_counter() - started
        route = _route_label(request)
        REQUESTS.labels(route, request.method, str(response.status)).inc()
        LATENCY.labels(route, request.method, str(response.status)).observe(elapsed)
        # no client IP, query string or user id: the request id ties a line to the audit trail
        log.info("request", extra={"method": request.method, "route": route, "status": response.status,
                                   "ms": round(elapsed * 1000, 1)})
        return response
    finally:
        request_id.reset(token)
