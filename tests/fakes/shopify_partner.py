"""A fake Shopify Partner API: a real aiohttp server that executes GraphQL against the schema.

Incoming documents are parsed and validated with graphql-core against the published 2025-07
schema (so an invalid query is refused the way the real API refuses it) and executed over an
in-memory data set: ``transactions(first, after, createdAtMin, createdAtMax, types, appId,
myshopifyDomain)``, ``app(id) { events(first, after, occurredAtMin, occurredAtMax, types) }``.
Cursors are opaque. Faults reproduce what Shopify answers:

* ``throttled``      200 ``{"errors":[{"message":"Throttled","extensions":{"code":"THROTTLED"}}]}``
* ``throttled_429``  429 with ``Retry-After`` and the same JSON body
* ``error_page``     500 with an HTML page
* ``bad_gateway``    502 with an HTML page
* ``unauthorized``   401 ``{"errors":"[API] Invalid API key or access token (unrecognized login or wrong password)"}``
* ``garbage``        200 with a body that is not JSON
* ``hang``           never answers (until the fake closes)

A wrong ``X-Shopify-Access-Token`` always gets the 401; a wrong organisation id a 404 page.

One deliberate extension: the data set may hold subscription sales billed ``EVERY_90_DAYS``.
The 2025-07 schema's ``AppPricingInterval`` has only ``EVERY_30_DAYS`` and ``ANNUAL``; the fake
serves the extra value (executing against a copy of the schema that has it) to prove the
sync normalises a 90-day interval if Shopify reports one. Queries are still validated against
the unmodified schema.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import graphql
from aiohttp import web

SCHEMA_FILE = Path(__file__).resolve().parents[2].parent / "shared" / "shopify" / "partner-api-schema.2025-07.json"
VERSION = "2025-07"
FAULTS = ("throttled", "throttled_429", "error_page", "bad_gateway", "unauthorized", "garbage", "hang")
REVENUE_SHARE = Decimal("0.15")  # Shopify's share, for realistic net amounts

_HTML_500 = """<!DOCTYPE html>
<html><head><title>Shopify Partners - Internal Server Error</title></head>
<body><h1>There was a problem loading this website</h1><p>Please try again later.</p></body></html>"""
_HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>"
_HTML_404 = "<!DOCTYPE html><html><head><title>Page not found</title></head><body><h1>404</h1></body></html>"
THROTTLED_BODY = {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]}
UNAUTHORIZED_BODY = {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}


def _load_schemas() -> tuple[graphql.GraphQLSchema, graphql.GraphQLSchema]:
    data = json.loads(SCHEMA_FILE.read_text())["data"]
    published = graphql.build_client_schema(data)
    extended_data = json.loads(json.dumps(data))
    for typ in extended_data["__schema"]["types"]:
        if typ["name"] == "AppPricingInterval":
            typ["enumValues"].append({"name": "EVERY_90_DAYS", "description": "Fake-only: billed every 90 days.",
                                      "isDeprecated": False, "deprecationReason": None})
    return published, graphql.build_client_schema(extended_data)


_SCHEMAS: tuple[graphql.GraphQLSchema, graphql.GraphQLSchema] | None = None


def schemas() -> tuple[graphql.GraphQLSchema, graphql.GraphQLSchema]:
    global _SCHEMAS
    if _SCHEMAS is None:
        _SCHEMAS = _load_schemas()
    return _SCHEMAS


def iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _money(amount: Decimal | str, currency: str = "USD") -> dict:
    return {"amount": f"{Decimal(amount):.2f}", "currencyCode": currency}


def _cursor(kind: str, key: str) -> str:
    return base64.b64encode(f"{kind}:{key}".encode()).decode()


def _uncursor(kind: str, cursor: str) -> str:
    try:
        prefix, key = base64.b64decode(cursor.encode(), validate=True).decode().split(":", 1)
    except (ValueError, UnicodeDecodeError):
        raise graphql.GraphQLError("Invalid cursor") from None
    if prefix != kind:
        raise graphql.GraphQLError("Invalid cursor")
    return key


def _time_arg(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise graphql.GraphQLError(f"Invalid DateTime: {value}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@dataclass
class Request:
    operation: str | None
    variables: dict
    path: str
    token_ok: bool


@dataclass
class FakePartnerApi:
    partner_org_id: str = "1357913"
    token: str = "prtapi_0123456789abcdef0123456789abcdef"
    newest_first: bool = True              # the order the real API lists transactions in is not ours to rely on
    retry_after: str = "1"
    max_page: int = 100
    apps: dict[str, dict] = field(default_factory=dict)
    shops: dict[str, dict] = field(default_factory=dict)
    transactions: list[dict] = field(default_factory=list)
    events: dict[str, list[dict]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1000001)
        self._faults: deque[str] = deque()
        self._scheduled: dict[int, str] = {}
        self._always: str | None = None
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # -- data set ---------------------------------------------------------------------------
    def add_app(self, name: str, gid: str | None = None) -> str:
        gid = gid or f"gid://partners/App/{next(self._ids)}"
        self.apps[gid] = {"id": gid, "name": name, "apiKey": base64.b16encode(gid.encode()).decode()[:32].lower()}
        self.events.setdefault(gid, [])
        return gid

    def shop(self, domain: str) -> dict:
        if domain not in self.shops:
            name = domain.split(".", 1)[0].replace("-", " ").title()
            self.shops[domain] = {"__typename": "Shop", "id": f"gid://partners/Shop/{next(self._ids)}",
                                  "myshopifyDomain": domain, "name": name, "avatarUrl": None}
        return self.shops[domain]

    def add_transaction(self, typename: str, app: str, shop: str, at: datetime, gross: str, *,
                        charge_id: str | None = None, interval: str | None = None, currency: str = "USD",
                        tid: str | None = None) -> dict:
        """A sale, adjustment or credit as the Partner API reports it (deductions carry negative amounts)."""
        gross_d = Decimal(gross)
        fee = (gross_d * REVENUE_SHARE).quantize(Decimal("0.01"))
        node = {
            "__typename": typename,
            "id": tid or f"gid://partners/{typename}/{next(self._ids)}",
            "createdAt": iso(at),
            "app": self.apps[app],
            "shop": self.shop(shop),
            "chargeId": charge_id,
            "grossAmount": _money(gross_d, currency),
            "netAmount": _money(gross_d - fee, currency),
            "shopifyFee": _money(fee, currency),
        }
        if typename == "AppSubscriptionSale":
            node["billingInterval"] = interval
        self.transactions.append(node)
        return node

    def add_event(self, app: str, type_: str, shop: str, at: datetime, *, charge: dict | None = None,
                  reason: str | None = None) -> dict:
        """An app event; ``charge`` = {"id", "name", "amount", "currency", "billingOn", "test"}."""
        typename = "".join(part.capitalize() for part in type_.lower().split("_"))
        node: dict[str, Any] = {"__typename": typename, "type": type_, "occurredAt": iso(at), "app": self.apps[app],
                                "shop": self.shop(shop)}
        if charge is not None:
            charge_node = {"id": charge["id"], "name": charge.get("name", "Charge"), "test": charge.get("test", False),
                           "amount": _money(charge.get("amount", "0"), charge.get("currency", "USD"))}
            if type_.startswith("SUBSCRIPTION_"):
                charge_node["__typename"] = "AppSubscription"
                charge_node["billingOn"] = iso(charge["billingOn"]) if charge.get("billingOn") else None
            elif type_.startswith("ONE_TIME_"):
                charge_node["__typename"] = "AppPurchaseOneTime"
            elif type_.startswith("USAGE_"):
                charge_node["__typename"] = "AppUsageRecord"
            elif type_.startswith("CREDIT_"):
                charge_node["__typename"] = "AppCredit"
            node["appCredit" if type_.startswith("CREDIT_") else "charge"] = charge_node
        if type_ == "RELATIONSHIP_UNINSTALLED":
            node["reason"] = reason
            node["description"] = None
        self.events[app].append(node)
        return node

    # -- faults -----------------------------------------------------------------------------
    def fail_next(self, kind: str, times: int = 1) -> None:
        if kind not in FAULTS:
            raise ValueError(kind)
        self._faults.extend([kind] * times)

    def fail_on_request(self, number: int, kind: str) -> None:
        """The ``number``-th request from now on (1 = the next one) gets ``kind``."""
        if kind not in FAULTS:
            raise ValueError(kind)
        self._scheduled[len(self.requests) + number] = kind

    def fail_always(self, kind: str | None) -> None:
        if kind is not None and kind not in FAULTS:
            raise ValueError(kind)
        self._always = kind

    # -- server -----------------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/{org}/api/{version}/graphql.json", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def close(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> "FakePartnerApi":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        token_ok = request.headers.get("X-Shopify-Access-Token") == self.token
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            body = {}
        operation = body.get("operationName") if isinstance(body, dict) else None
        document_text = body.get("query") if isinstance(body, dict) else None
        if operation is None and isinstance(document_text, str):
            try:
                ops = [d for d in graphql.parse(document_text).definitions if isinstance(d, graphql.OperationDefinitionNode)]
                operation = ops[0].name.value if ops and ops[0].name else None
            except graphql.GraphQLError:
                operation = None
        variables = body.get("variables") or {} if isinstance(body, dict) else {}
        self.requests.append(Request(operation, dict(variables), request.path, token_ok))

        fault = self._scheduled.pop(len(self.requests), None)
        if fault is None:
            fault = self._faults.popleft() if self._faults else self._always
        if fault == "hang":
            await self._release.wait()
            return web.Response(status=503, text="closing")
        if fault == "unauthorized" or not token_ok:
            return web.json_response(UNAUTHORIZED_BODY, status=401)
        if request.match_info["org"] != self.partner_org_id or request.match_info["version"] != VERSION:
            return web.Response(status=404, text=_HTML_404, content_type="text/html")
        if fault == "throttled":
            return web.json_response(THROTTLED_BODY)
        if fault == "throttled_429":
            return web.json_response(THROTTLED_BODY, status=429, headers={"Retry-After": self.retry_after})
        if fault == "error_page":
            return web.Response(status=500, text=_HTML_500, content_type="text/html")
        if fault == "bad_gateway":
            return web.Response(status=502, text=_HTML_502, content_type="text/html")
        if fault == "garbage":
            return web.Response(status=200, text="<html>maintenance", content_type="application/json")

        if not isinstance(document_text, str):
            return web.json_response({"errors": [{"message": "No query string was present"}]}, status=400)
        return web.json_response(self.execute(document_text, variables))

    def execute(self, document_text: str, variables: dict) -> dict:
        published, extended = schemas()
        try:
            document = graphql.parse(document_text)
        except graphql.GraphQLError as exc:
            return {"errors": [exc.formatted]}
        errors = graphql.validate(published, document)
        if errors:
            return {"errors": [e.formatted for e in errors]}
        result = graphql.execute(extended, document, root_value=self._root(), variable_values=variables)
        out: dict[str, Any] = {"data": result.data}
        if result.errors:
            out["errors"] = [e.formatted for e in result.errors]
        return out

    # -- resolvers --------------------------------------------------------------------------
    def _root(self) -> dict:
        return {"transactions": self._transactions, "app": self._app, "publicApiVersions": self._versions}

    def _versions(self, _info) -> list:
        return [{"handle": VERSION, "displayName": VERSION, "supported": True}]

    def _page(self, items: list[dict], kind: str, key, first: int | None, after: str | None) -> dict:
        if first is None:
            raise graphql.GraphQLError("you must provide one of first or last")
        if first > self.max_page or first < 0:
            raise graphql.GraphQLError(f"first must be between 0 and {self.max_page}")
        start = 0
        if after is not None:
            wanted = _uncursor(kind, after)
            keys = [key(i, item) for i, item in enumerate(items)]
            if wanted not in keys:
                raise graphql.GraphQLError("Invalid cursor")
            start = keys.index(wanted) + 1
        chosen = items[start:start + first]
        return {
            "edges": [{"cursor": _cursor(kind, key(start + n, item)), "node": item} for n, item in enumerate(chosen)],
            "pageInfo": {"hasNextPage": start + first < len(items), "hasPreviousPage": start > 0},
        }

    def _transactions(self, _info, first=None, after=None, createdAtMin=None, createdAtMax=None, types=None,
                      appId=None, myshopifyDomain=None, shopId=None, **_ignored) -> dict:
        lo, hi = _time_arg(createdAtMin), _time_arg(createdAtMax)
        type_names = None
        if types is not None:
            type_names = {"".join(p.capitalize() for p in t.lower().split("_")) for t in types}
        chosen = []
        for node in self.transactions:
            at = _time_arg(node["createdAt"])
            if lo and at < lo or hi and at > hi:
                continue
            if type_names is not None and node["__typename"] not in type_names:
                continue
            if appId and node["app"]["id"] != appId:
                continue
            if myshopifyDomain and node["shop"]["myshopifyDomain"] != myshopifyDomain:
                continue
            if shopId and node["shop"]["id"] != shopId:
                continue
            chosen.append(node)
        chosen.sort(key=lambda n: (n["createdAt"], n["id"]), reverse=self.newest_first)
        return self._page(chosen, "tx", lambda _i, n: n["id"], first, after)

    def _app(self, _info, id) -> dict | None:
        app = self.apps.get(id)
        if app is None:
            return None
        return {**app, "events": lambda info, **args: self._events(id, **args)}

    def _events(self, app_gid: str, first=None, after=None, occurredAtMin=None, occurredAtMax=None, types=None,
                shopId=None, chargeId=None, **_ignored) -> dict:
        lo, hi = _time_arg(occurredAtMin), _time_arg(occurredAtMax)
        chosen = []
        for index, node in enumerate(self.events.get(app_gid, [])):
            at = _time_arg(node["occurredAt"])
            if lo and at < lo or hi and at > hi:
                continue
            if types is not None and node["type"] not in types:
                continue
            if shopId and node["shop"]["id"] != shopId:
                continue
            if chargeId and (node.get("charge") or node.get("appCredit") or {}).get("id") != chargeId:
                continue
            chosen.append((index, node))
        chosen.sort(key=lambda pair: (pair[1]["occurredAt"], pair[0]), reverse=True)
        nodes = [node for _i, node in chosen]
        indexes = {id(node): str(i) for i, node in chosen}
        return self._page(nodes, "ev", lambda _i, n: indexes[id(n)], first, after)
