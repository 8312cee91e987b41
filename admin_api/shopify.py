"""Shopify revenue in the admin API: the connection (owners), the merchant panel (Revenue
permission), the revenue dashboard.  The data comes from engine/shopify/ (docs/revenue.md).

The merchant panel answers 404 — never 403 — to a member without the Revenue permission and
for a contact that is not linked to a merchant by a verified shop, so neither reveals anything.
"""

from __future__ import annotations

import datetime as dt

import aiohttp
from aiohttp import web

from admin_api import keys
from admin_api.call import Call
from admin_api.errors import ApiError
from admin_api.routing import RouteTable
from admin_api.schemas import Array, Boolean, Integer, Nested, Object, Schema, String
from engine.shopify import connections
from engine.shopify.errors import PartnerApiError, Throttled, Unavailable
from engine.shopify.revenue import merchant_for_contact, revenue_dashboard

routes = RouteTable(tag="shopify")
SHOPIFY_HTTP = web.AppKey("shopify_http", aiohttp.ClientSession)


async def shopify_context(app: web.Application):
    """The HTTP session of connection checks (bounded by shopify.request_timeout; rare, so no keep-alive)."""
    settings = app[keys.CONFIG].shopify
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=settings.request_timeout),
                                    connector=aiohttp.TCPConnector(force_close=True))
    app[SHOPIFY_HTTP] = session
    yield
    await session.close()


class ShopifyConnect(Schema):
    """The Partner organisation and its Partner API token (with the financials permission)."""

    partner_org_id = String(min_length=1, max_length=20, pattern=r"^[0-9]+$", example="1357913",
                            description="the number in the Partner Dashboard URL")
    token = String(format="password", min_length=8, max_length=255, example="prtapi_0123456789abcdef",
                   description="Partner API client token; stored encrypted, never shown again")


class ShopifyApp(Schema):
    app_gid = String(example="gid://partners/App/4001")
    name = String(example="Reviews Pro")


class ShopifyConnection(Schema):
    """The connection as owners see it: the token only masked."""

    connected = Boolean()
    partner_org_id = String(nullable=True)
    token = String(nullable=True, description="masked: the last four characters only", example="••••••••cdef")
    status = String(nullable=True, description="active, syncing or stopped (after 12 failed runs: use sync now)")
    consecutive_failures = Integer(minimum=0)
    last_error = String(nullable=True, description="<code>: <reason>")
    last_sync_at = String(nullable=True)
    next_sync_at = String(nullable=True)
    progress = Object(nullable=True)
    last_result = Object(nullable=True)
    apps = Array(Nested(ShopifyApp))


class MerchantApp(Schema):
    app_gid = String()
    app_name = String(nullable=True)
    plan = String(nullable=True)
    status = String(description="trialing, active, frozen or churned")
    mrr = String(description="exact decimal, normalised to 30 days", example="24.9167")
    lifetime_value = String(description="lifetime gross revenue, exact decimal", example="279.0000")
    currency = String(example="USD")
    billing_interval = String(nullable=True)
    installed_at = String(nullable=True)
    uninstalled_at = String(nullable=True)
    trial_ends_at = String(nullable=True)
    recent_events = Array(Object(), max_items=100)


class MerchantPanel(Schema):
    """What the inbox shows next to a conversation with a verified merchant."""

    shop_domain = String(example="alpha.myshopify.com")
    apps = Array(Nested(MerchantApp))


class RevenueDashboard(Schema):
    """MRR, ARR, active merchants, new / churned MRR and ARPU per range, overall and per app."""

    generated_at = String()
    overall = Object(max_keys=10, description="range -> metrics (per currency) and the chart series")
    apps = Object(max_keys=10000, description="app gid -> range -> metrics")
    app_names = Object(max_keys=10000)


def _connection(view: dict | None) -> ShopifyConnection:
    if view is None:
        return ShopifyConnection(connected=False, partner_org_id=None, token=None, status=None, consecutive_failures=0,
                                 last_error=None, last_sync_at=None, next_sync_at=None, progress=None,
                                 last_result=None, apps=[])
    return ShopifyConnection(
        connected=True, partner_org_id=view["partner_org_id"], token=view["token"], status=view["status"],
        consecutive_failures=view["consecutive_failures"], last_error=view["last_error"],
        last_sync_at=view["last_sync_at"], next_sync_at=view["next_sync_at"], progress=view["progress"],
        last_result=view["last_result"], apps=[ShopifyApp(**a) for a in view["apps"]])


@routes.route("GET", "/v1/orgs/{org_id}/shopify", permission="shopify.manage", response=ShopifyConnection,
              summary="The Shopify Partner connection: status, sync progress and last result")
async def get_connection(call: Call) -> ShopifyConnection:
    return _connection(await connections.status(call.app[keys.DB], call.org_id))


@routes.route("PUT", "/v1/orgs/{org_id}/shopify", permission="shopify.manage", body=ShopifyConnect,
              response=ShopifyConnection, summary="Connect (or reconnect) a Shopify Partner organisation",
              errors=("shopify_connection_failed", "shopify_unavailable"))
async def connect(call: Call) -> ShopifyConnection:
    """Validated at once with a real query; the token is stored encrypted and shown masked."""
    b = call.body

    async def audit(conn) -> None:
        await call.audit(conn, "shopify.connected", "shopify_connection", b.partner_org_id,
                         {"partner_org_id": b.partner_org_id})

    try:
        view = await connections.connect(call.app[keys.DB], call.app[keys.ENCRYPTOR], call.app[SHOPIFY_HTTP],
                                         call.config.shopify, org_id=call.org_id, partner_org_id=b.partner_org_id,
                                         token=b.token, audit=audit)
    except connections.ConnectionInputError as exc:
        field = "partner_org_id" if exc.code == "invalid_partner_org_id" else "token"
        raise ApiError("unprocessable_entity", details={"field": field, "reason": str(exc)}) from None
    except (Unavailable, Throttled) as exc:
        raise ApiError("shopify_unavailable", details={"cause": exc.code}) from None
    except PartnerApiError as exc:
        raise ApiError("shopify_connection_failed", details={"cause": exc.code}) from None
    return _connection(view)


@routes.route("DELETE", "/v1/orgs/{org_id}/shopify", permission="shopify.manage", status=204,
              summary="Disconnect: deletes the stored token")
async def disconnect(call: Call) -> None:
    async def audit(conn) -> None:
        await call.audit(conn, "shopify.disconnected", "shopify_connection", None)

    if not await connections.disconnect(call.app[keys.DB], call.org_id, audit=audit):
        raise ApiError("not_found")


@routes.route("POST", "/v1/orgs/{org_id}/shopify/sync", permission="shopify.manage", response=ShopifyConnection,
              status=202, summary="Sync now (also restarts a connection stopped after repeated failures)")
async def sync_now(call: Call) -> ShopifyConnection:
    async def audit(conn) -> None:
        await call.audit(conn, "shopify.sync_requested", "shopify_connection", None)

    if not await connections.request_sync_now(call.app[keys.DB], call.org_id, audit=audit):
        raise ApiError("not_found")
    return _connection(await connections.status(call.app[keys.DB], call.org_id))


@routes.route("GET", "/v1/orgs/{org_id}/contacts/{contact_id}/merchant", permission="contacts.read",
              response=MerchantPanel, summary="The merchant behind a contact (Revenue permission)")
async def contact_merchant(call: Call) -> MerchantPanel:
    """Only for members with the Revenue permission, and only through a verified shop."""
    if call.member is None or not call.member.allows("revenue.read"):
        raise ApiError("not_found")
    panel = await merchant_for_contact(call.app[keys.DB], call.org_id, call.path["contact_id"])
    if panel is None:
        raise ApiError("not_found")
    return MerchantPanel(shop_domain=panel["shop_domain"], apps=[MerchantApp(
        app_gid=a["app"]["app_gid"], app_name=a["app"]["name"], plan=a["plan"], status=a["status"],
        mrr=a["mrr"]["amount"], lifetime_value=a["lifetime_value"]["amount"], currency=a["mrr"]["currency"],
        billing_interval=a["billing_interval"], installed_at=a["installed_at"], uninstalled_at=a["uninstalled_at"],
        trial_ends_at=a["trial_ends_at"], recent_events=a["recent_events"]) for a in panel["apps"]])


@routes.route("GET", "/v1/orgs/{org_id}/revenue", permission="revenue.read", response=RevenueDashboard,
              summary="Revenue dashboard: yesterday, 7, 30, 90 days and 12 months")
async def dashboard(call: Call) -> RevenueDashboard:
    result = await revenue_dashboard(call.app[keys.DB], call.org_id, dt.datetime.now(dt.timezone.utc))
    return RevenueDashboard(**result)
