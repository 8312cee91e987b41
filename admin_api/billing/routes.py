"""Billing routes: the owner's billing page, Checkout, the billing portal, the banner every
member sees, and Stripe's webhook (public, verified by signature on the raw body)."""

from __future__ import annotations

import re
import uuid

from aiohttp import web

from admin_api import keys
from admin_api.billing.plans import Plans, plans_from_config
from admin_api.billing.service import StripeBilling, banner, overview, process_event
from admin_api.billing.webhooks import verify_event
from admin_api.call import Call
from admin_api.routing import RouteTable
from admin_api.schemas import Array, Boolean, Object, Schema, String

routes = RouteTable(tag="billing")
PLANS = web.AppKey("plans", Plans)
STRIPE = web.AppKey("stripe", StripeBilling)
_ATTEMPT = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


async def billing_context(app: web.Application):
    """Plans (validated at start-up) and the Stripe client (closed at shutdown)."""
    config = app[keys.CONFIG]
    plans = plans_from_config(config)
    app[PLANS] = plans
    app[STRIPE] = StripeBilling(config.billing, plans)
    yield
    await app[STRIPE].close()


class BillingOverview(Schema):
    """The owner's billing page."""

    plan = String(description="the plan whose limits apply now")
    status = String(description="Stripe subscription status, or none")
    banner = String(nullable=True, description="payment_failed while past due: chat goes on")
    subscribed_plan = String()
    current_period_end = String(nullable=True)
    cancel_at_period_end = Boolean()
    seats = Object(description="limit, members, pending_invites")
    apps = Object(description="limit, used")
    plans = Array(Object())


class CheckoutCreate(Schema):
    plan = String(min_length=1, max_length=50, example="team")


class RedirectUrl(Schema):
    url = String(description="send the browser here (Stripe)")


class Banner(Schema):
    banner = String(nullable=True, example="payment_failed")


class WebhookAnswer(Schema):
    received = Boolean()
    outcome = String(description="processed, duplicate or unknown_customer")


def _attempt(call: Call) -> str:
    """The client's key for this click (Idempotency-Key), so a retried request is not a second one."""
    key = call.request.headers.get("Idempotency-Key", "")
    return key if _ATTEMPT.match(key) else uuid.uuid4().hex


def _page(call: Call, query: str) -> str:
    """Where Stripe sends the browser back: the inbox (served at /app/), never a URL the client chose."""
    return call.config.admin_api.public_url.rstrip("/") + f"/app/?org={call.org_id}&billing=1{query}"


@routes.route("GET", "/v1/orgs/{org_id}/billing", permission="billing.manage", response=BillingOverview,
              summary="Plan, status, limits in use and the plans on offer")
async def get_billing(call: Call) -> BillingOverview:
    async with call.db() as conn:
        return BillingOverview(**await overview(conn, call.org_id, call.app[PLANS]))


@routes.route("GET", "/v1/orgs/{org_id}/billing/banner", permission="org.read", response=Banner,
              summary="The billing banner every member sees (payment_failed while past due)")
async def get_banner(call: Call) -> Banner:
    async with call.db() as conn:
        return Banner(banner=await banner(conn, call.org_id))


@routes.route("POST", "/v1/orgs/{org_id}/billing/checkout", permission="billing.manage", body=CheckoutCreate,
              response=RedirectUrl, summary="A Stripe Checkout session for a plan (send Idempotency-Key per click)",
              errors=("plan_unknown", "plan_not_purchasable", "billing_not_configured", "billing_unavailable"))
async def create_checkout(call: Call) -> RedirectUrl:
    async with call.db() as conn:
        org_name = await conn.fetchval("SELECT name FROM organisations WHERE id = $1", call.org_id)
        email = await conn.fetchval("SELECT email FROM users WHERE id = $1", call.user_id)
    url = await call.app[STRIPE].checkout_url(
        call.app[keys.DB], call.org_id, plan=call.body.plan, org_name=org_name, email=email,
        success_url=_page(call, "&checkout=success"), cancel_url=_page(call, "&checkout=cancelled"),
        attempt=_attempt(call))
    async with call.db() as conn:
        await call.audit(conn, "billing.checkout_started", "plan", call.body.plan)
    return RedirectUrl(url=url)


@routes.route("POST", "/v1/orgs/{org_id}/billing/portal", permission="billing.manage", response=RedirectUrl,
              summary="A Stripe billing portal session (payment method, invoices, cancel)",
              errors=("no_billing_account", "billing_not_configured", "billing_unavailable"))
async def create_portal(call: Call) -> RedirectUrl:
    url = await call.app[STRIPE].portal_url(call.app[keys.DB], call.org_id, return_url=_page(call, ""),
                                            attempt=_attempt(call))
    return RedirectUrl(url=url)


@routes.route("POST", "/v1/billing/stripe/webhook", permission="public", raw_body=True, response=WebhookAnswer,
              summary="Stripe events (verified by Stripe-Signature on the raw body, 5-minute tolerance)",
              errors=("webhook_signature_invalid", "webhook_timestamp_outside_tolerance", "webhook_payload_invalid",
                      "billing_not_configured"))
async def stripe_webhook(call: Call) -> WebhookAnswer:
    settings = call.config.billing
    raw = await call.request.read()
    event = verify_event(raw, call.request.headers.get("Stripe-Signature"), settings.stripe_webhook_secret,
                         tolerance=settings.webhook_tolerance)
    outcome = await process_event(call.app[keys.DB], call.app[PLANS], event)
    return WebhookAnswer(received=True, outcome=outcome)
