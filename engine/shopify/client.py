"""PartnerClient: GraphQL over aiohttp to ``{base}/{partner_org_id}/api/{version}/graphql.json``.

Every failure becomes one typed exception of :mod:`engine.shopify.errors`. A throttled answer
(HTTP 429, or a GraphQL error with ``extensions.code == "THROTTLED"``) is retried after a wait
that honours ``Retry-After`` when Shopify sends one and otherwise grows exponentially with
jitter, capped at ``max_backoff``; requests are paced at ``requests_per_second`` (the Partner
API allows 4 per second per client). The token is sent only in ``X-Shopify-Access-Token`` and
never logged.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import orjson

from engine.shopify import metrics, queries
from engine.shopify.errors import BadResponse, NotFound, PartnerApiError, QueryError, Throttled, Unauthorized, Unavailable

log = logging.getLogger("convot.shopify.client")

MAX_RESPONSE_BYTES = 32 * 1024 * 1024
_THROTTLE_BASE = 1.0


@dataclass(frozen=True)
class Page:
    edges: list[tuple[str, dict]]    # (cursor, node)
    has_next: bool

    @property
    def last_cursor(self) -> str | None:
        return self.edges[-1][0] if self.edges else None


@dataclass(frozen=True)
class EventsPage(Page):
    app_name: str = ""


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def interpret(status: int, body: bytes, retry_after_header: str | None = None) -> dict:
    """Pure: an HTTP answer of the Partner API -> its ``data`` or a typed exception."""
    if status in (401, 403):
        raise Unauthorized(f"HTTP {status}: the Partner API refused the token", status=status)
    if status == 404:
        raise NotFound("HTTP 404: no such Partner organisation for this token", status=status)
    if status == 429:
        metrics.THROTTLED.inc()
        raise Throttled("HTTP 429", status=status, retry_after=_retry_after(retry_after_header))
    if status >= 500:
        raise Unavailable(f"HTTP {status}", status=status)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadResponse(f"HTTP {status}: the answer is not JSON", status=status) from None
    if not isinstance(payload, dict):
        raise BadResponse(f"HTTP {status}: the answer is not a JSON object", status=status)
    errors = payload.get("errors")
    if errors:
        if isinstance(errors, list):
            for error in errors:
                extensions = error.get("extensions") if isinstance(error, dict) else None
                if isinstance(extensions, dict) and extensions.get("code") == "THROTTLED":
                    metrics.THROTTLED.inc()
                    raise Throttled("THROTTLED", status=status, retry_after=_retry_after(retry_after_header))
            first = errors[0]
            message = first.get("message") if isinstance(first, dict) else str(first)
        else:
            message = str(errors)
        raise QueryError(f"HTTP {status}: {str(message)[:200]}", status=status)
    if status != 200:
        raise BadResponse(f"HTTP {status} without errors", status=status)
    data = payload.get("data")
    if not isinstance(data, dict):
        raise BadResponse("HTTP 200 without data", status=status)
    return data


def throttle_delay(attempt: int, retry_after: float | None, max_backoff: float, rng: random.Random) -> float:
    """Seconds to wait before retry ``attempt`` (0-based) of a throttled request."""
    if retry_after is not None:
        return min(retry_after, max_backoff)
    ceiling = min(max_backoff, _THROTTLE_BASE * (2 ** attempt))
    return rng.uniform(ceiling / 2, ceiling)


class PartnerClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        version: str,
        partner_org_id: str,
        token: str,
        request_timeout: float = 30.0,
        requests_per_second: float = 4.0,
        throttle_retries: int = 6,
        max_backoff: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ):
        self._session = session
        self.url = f"{base_url.rstrip('/')}/{partner_org_id}/api/{version}/graphql.json"
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._interval = 1.0 / requests_per_second
        self._retries = throttle_retries
        self._max_backoff = max_backoff
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._next_at = 0.0
        self.throttled = 0  # throttled answers seen by this client (for sync progress)

    @classmethod
    def from_config(cls, session: aiohttp.ClientSession, settings, *, partner_org_id: str, token: str, **kw) -> "PartnerClient":
        return cls(
            session, base_url=settings.api_base, version=settings.api_version, partner_org_id=partner_org_id,
            token=token, request_timeout=settings.request_timeout, requests_per_second=settings.requests_per_second,
            throttle_retries=settings.throttle_retries, max_backoff=settings.max_backoff, **kw,
        )

    async def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._next_at > now:
            await asyncio.sleep(self._next_at - now)
            now = loop.time()
        self._next_at = max(now, self._next_at) + self._interval

    async def _post_once(self, operation: str, document: str, variables: dict) -> dict:
        await self._pace()
        body = orjson.dumps({"query": document, "variables": variables, "operationName": operation})
        headers = {"X-Shopify-Access-Token": self._token, "Content-Type": "application/json",
                   "Accept": "application/json"}
        try:
            async with self._session.post(self.url, data=body, headers=headers, timeout=self._timeout) as resp:
                chunks, size = [], 0
                async for chunk in resp.content.iter_chunked(65536):
                    size += len(chunk)
                    if size > MAX_RESPONSE_BYTES:
                        raise BadResponse(f"answer larger than {MAX_RESPONSE_BYTES} bytes", status=resp.status)
                    chunks.append(chunk)
                return interpret(resp.status, b"".join(chunks), resp.headers.get("Retry-After"))
        except asyncio.TimeoutError:
            raise Unavailable("timed out") from None
        except aiohttp.ClientError as exc:
            raise Unavailable(f"connection failed ({type(exc).__name__})") from None

    async def query(self, operation: str, variables: dict) -> dict:
        """Run one of :data:`queries.ALL` by name; retries throttled answers, raises the rest."""
        document = queries.ALL[operation]
        attempt = 0
        while True:
            try:
                data = await self._post_once(operation, document, variables)
            except Throttled as exc:
                self.throttled += 1
                metrics.REQUESTS.labels(operation, exc.code).inc()
                if attempt >= self._retries:
                    raise
                delay = throttle_delay(attempt, exc.retry_after, self._max_backoff, self._rng)
                log.info("partner API throttled; backing off",
                         extra={"operation": operation, "attempt": attempt + 1, "wait_seconds": round(delay, 3)})
                attempt += 1
                await self._sleep(delay)
                continue
            except PartnerApiError as exc:
                metrics.REQUESTS.labels(operation, exc.code).inc()
                raise
            metrics.REQUESTS.labels(operation, "ok").inc()
            return data

    async def check(self) -> None:
        """Prove the organisation id and token belong together (raises on anything else)."""
        data = await self.query("ConvotConnectionCheck", {})
        if not isinstance(data.get("transactions"), dict):
            raise BadResponse("transactions missing from the connection check")

    async def transactions(self, *, first: int, after: str | None, created_at_min: str | None) -> Page:
        variables = {"first": first, "after": after, "createdAtMin": created_at_min,
                     "types": list(queries.APP_TRANSACTION_TYPES)}
        data = await self.query("ConvotTransactions", variables)
        return _page(data.get("transactions"), "transactions", Page)

    async def app_events(self, app_gid: str, *, first: int, after: str | None, occurred_at_min: str | None) -> EventsPage:
        variables = {"appId": app_gid, "first": first, "after": after, "occurredAtMin": occurred_at_min}
        data = await self.query("ConvotAppEvents", variables)
        app = data.get("app")
        if app is None:
            raise NotFound("an app of this organisation is not visible to the token")
        if not isinstance(app, dict):
            raise BadResponse("app: expected an object")
        page = _page(app.get("events"), "app.events", Page)
        name = app.get("name") if isinstance(app.get("name"), str) else ""
        return EventsPage(page.edges, page.has_next, name)


def _page(connection: object, where: str, cls):
    if not isinstance(connection, dict):
        raise BadResponse(f"{where}: expected a connection")
    edges = connection.get("edges")
    info = connection.get("pageInfo")
    if not isinstance(edges, list) or not isinstance(info, dict) or not isinstance(info.get("hasNextPage"), bool):
        raise BadResponse(f"{where}: expected edges and pageInfo.hasNextPage")
    out = []
    for edge in edges:
        if not isinstance(edge, dict) or not isinstance(edge.get("cursor"), str) or not isinstance(edge.get("node"), dict):
            raise BadResponse(f"{where}: expected edges with a cursor and a node")
        out.append((edge["cursor"], edge["node"]))
    return cls(out, info["hasNextPage"])
