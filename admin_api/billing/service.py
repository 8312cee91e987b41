"""Billing I/O: the webhook's database step, seat and app limits, Checkout and the portal.

Thin around the pure parts (``plans``, ``state``, ``webhooks``). Stripe is called through its
official library (async, over aiohttp, bounded by ``billing.request_timeout``) with explicit
idempotency keys, and only from the owner's billing routes: Stripe being slow or down never
touches chat.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

import asyncpg
import stripe

from admin_api.billing.errors import BillingError
from admin_api.billing.plans import Plan, Plans
from admin_api.billing.state import BillingState, apply_event, customer_of
from convot.db import scoped
from convot.metrics import STRIPE_LAST_EVENT, STRIPE_REQUESTS, STRIPE_WEBHOOKS

log = logging.getLogger("convot.billing")

_ACCOUNT_COLUMNS = ("plan, status, stripe_customer_id, stripe_subscription_id, current_period_end, "
                    "cancel_at_period_end, state_event_created, state_event_rank, object_event_created, "
                    "object_event_rank")


def _state(row) -> BillingState:
    if row is None:
        return BillingState()
    return BillingState(plan=row["plan"], status=row["status"], stripe_customer_id=row["stripe_customer_id"],
                        stripe_subscription_id=row["stripe_subscription_id"],
                        current_period_end=row["current_period_end"], cancel_at_period_end=row["cancel_at_period_end"],
                        state_event_created=row["state_event_created"], state_event_rank=row["state_event_rank"],
                        object_event_created=row["object_event_created"], object_event_rank=row["object_event_rank"])


# ---------------------------------------------------------------------------------------------
# Webhook
# ---------------------------------------------------------------------------------------------

async def process_event(pool: asyncpg.Pool, plans: Plans, event: dict) -> str:
    """Apply one verified event. Returns ``processed``, ``duplicate`` (this event id was seen:
    nothing changes) or ``unknown_customer`` (not one of ours: acknowledged, nothing stored);
    counted in ``convot_stripe_webhook_events_total{outcome}``."""
    outcome = await _process_event(pool, plans, event)
    STRIPE_WEBHOOKS.labels(outcome).inc()
    STRIPE_LAST_EVENT.set_to_current_time()
    return outcome


async def _process_event(pool: asyncpg.Pool, plans: Plans, event: dict) -> str:
    customer = customer_of(event)
    if customer is None:
        return "unknown_customer"
    async with scoped(pool, stripe_customer=customer) as conn:
        org_id = await conn.fetchval("SELECT org_id FROM billing_accounts WHERE stripe_customer_id = $1", customer)
    if org_id is None:
        return "unknown_customer"
    async with scoped(pool, org_id=org_id) as conn:
        first_time = await conn.fetchval(
            """INSERT INTO stripe_events (id, org_id, type, created) VALUES ($1, $2, $3, $4)
               ON CONFLICT (id) DO NOTHING RETURNING true""",
            event["id"], org_id, event["type"], int(event["created"]))
        if not first_time:
            return "duplicate"
        row = await conn.fetchrow(
            f"SELECT {_ACCOUNT_COLUMNS} FROM billing_accounts WHERE org_id = $1 FOR UPDATE", org_id)
        decision = apply_event(_state(row), event, plans)
        if decision.changed:
            s = decision.state
            await conn.execute(
                """UPDATE billing_accounts SET plan = $2, status = $3, stripe_subscription_id = $4,
                       current_period_end = $5, cancel_at_period_end = $6, state_event_created = $7,
                       state_event_rank = $8, object_event_created = $9, object_event_rank = $10, updated_at = now()
                   WHERE org_id = $1""",
                org_id, s.plan, s.status, s.stripe_subscription_id, s.current_period_end, s.cancel_at_period_end,
                s.state_event_created, s.state_event_rank, s.object_event_created, s.object_event_rank)
            await conn.execute("UPDATE organisations SET plan = $2 WHERE id = $1",
                               org_id, plans.effective(s.plan, s.status).name)
        log.info("stripe event", extra={"org_id": str(org_id), "event_type": event["type"],
                                        "event_id": event["id"], "outcome": decision.reason})
    return "processed"


# ---------------------------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------------------------

async def current_plan(conn: asyncpg.Connection, org_id: uuid.UUID, plans: Plans) -> tuple[Plan, BillingState]:
    row = await conn.fetchrow(f"SELECT {_ACCOUNT_COLUMNS} FROM billing_accounts WHERE org_id = $1", org_id)
    state = _state(row)
    if row is None:
        # No Stripe account: the plan set on the organisation applies as it is (e.g. assigned by staff).
        name = await conn.fetchval("SELECT plan FROM organisations WHERE id = $1", org_id)
        return (plans.get(name) if name in plans else plans.effective(None, None)), state
    return plans.effective(state.plan, state.status), state


@dataclass(frozen=True)
class Usage:
    members: int
    pending_invites: int
    apps: int

    @property
    def seats(self) -> int:
        return self.members + self.pending_invites


async def usage(conn: asyncpg.Connection, org_id: uuid.UUID) -> Usage:
    row = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM members WHERE org_id = $1) AS members,
                  (SELECT count(*) FROM invites WHERE org_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL
                                                  AND expires_at > now()) AS pending,
                  (SELECT count(*) FROM apps WHERE org_id = $1) AS apps""", org_id)
    return Usage(row["members"], row["pending"], row["apps"])


def seats_left(plan: Plan, used: Usage) -> int:
    return plan.seats - used.seats


async def _lock_organisation(conn: asyncpg.Connection, org_id: uuid.UUID) -> None:
    # Serialises concurrent invites / app creations of one organisation until commit, so two
    # requests cannot both take the last seat.
    await conn.execute("SELECT 1 FROM organisations WHERE id = $1 FOR UPDATE", org_id)


async def check_seat_available(conn: asyncpg.Connection, org_id: uuid.UUID, plans: Plans, adding: int = 1) -> None:
    """Call inside the transaction that creates the invite. Pending invites count as seats."""
    await _lock_organisation(conn, org_id)
    plan, _state_ = await current_plan(conn, org_id, plans)
    used = await usage(conn, org_id)
    if used.seats + adding > plan.seats:
        raise BillingError("seat_limit_reached", {"plan": plan.name, "seats": plan.seats, "members": used.members,
                                                  "pending_invites": used.pending_invites})


async def check_app_available(conn: asyncpg.Connection, org_id: uuid.UUID, plans: Plans, adding: int = 1) -> None:
    """Call inside the transaction that creates the app."""
    await _lock_organisation(conn, org_id)
    plan, _state_ = await current_plan(conn, org_id, plans)
    used = await usage(conn, org_id)
    if used.apps + adding > plan.apps:
        raise BillingError("app_limit_reached", {"plan": plan.name, "apps": plan.apps, "used": used.apps})


async def overview(conn: asyncpg.Connection, org_id: uuid.UUID, plans: Plans) -> dict:
    """What the billing page shows (owner only)."""
    plan, state = await current_plan(conn, org_id, plans)
    used = await usage(conn, org_id)
    return {
        "plan": plan.name, "status": state.status, "banner": state.banner(),
        "subscribed_plan": state.plan,
        "current_period_end": state.current_period_end.isoformat() if state.current_period_end else None,
        "cancel_at_period_end": state.cancel_at_period_end,
        "seats": {"limit": plan.seats, "members": used.members, "pending_invites": used.pending_invites},
        "apps": {"limit": plan.apps, "used": used.apps},
        "plans": [{"name": p.name, "title": p.title, "seats": p.seats, "apps": p.apps,
                   "monthly_price": str(p.monthly_price), "purchasable": p.purchasable} for p in plans],
    }


async def banner(conn: asyncpg.Connection, org_id: uuid.UUID) -> str | None:
    """The banner every member sees (``payment_failed`` while past due); chat is never blocked."""
    row = await conn.fetchrow("SELECT status FROM billing_accounts WHERE org_id = $1", org_id)
    return BillingState(status=row["status"]).banner() if row else None


# ---------------------------------------------------------------------------------------------
# Stripe API (Checkout, billing portal)
# ---------------------------------------------------------------------------------------------

class StripeBilling:
    def __init__(self, settings, plans: Plans):
        self.plans = plans
        self.configured = bool(settings.stripe_secret_key)
        self._http = stripe.AIOHTTPClient(timeout=settings.request_timeout)
        self._client = stripe.StripeClient(
            settings.stripe_secret_key or "sk_unconfigured",
            base_addresses={"api": settings.stripe_api_base},
            http_client=self._http,
            max_network_retries=1,
        )

    async def close(self) -> None:
        await self._http.close_async()

    def _require(self) -> None:
        if not self.configured:
            raise BillingError("billing_not_configured")

    async def _customer(self, pool: asyncpg.Pool, org_id: uuid.UUID, *, name: str, email: str | None) -> str:
        async with scoped(pool, org_id=org_id) as conn:
            existing = await conn.fetchval("SELECT stripe_customer_id FROM billing_accounts WHERE org_id = $1", org_id)
        if existing:
            return existing
        params = {"name": name, "metadata": {"org_id": str(org_id)}}
        if email:
            params["email"] = email
        try:
            customer = await self._client.v1.customers.create_async(
                params, options={"idempotency_key": f"convot-customer-{org_id}"})
        except stripe.StripeError as exc:
            raise _unavailable(exc, "customers.create") from None
        STRIPE_REQUESTS.labels("customers.create", "ok").inc()
        async with scoped(pool, org_id=org_id) as conn:
            await conn.execute(
                """INSERT INTO billing_accounts (org_id, stripe_customer_id) VALUES ($1, $2)
                   ON CONFLICT (org_id) DO UPDATE SET stripe_customer_id = COALESCE(billing_accounts.stripe_customer_id,
                                                                                     EXCLUDED.stripe_customer_id)""",
                org_id, customer.id)
            return await conn.fetchval("SELECT stripe_customer_id FROM billing_accounts WHERE org_id = $1", org_id)

    async def checkout_url(self, pool: asyncpg.Pool, org_id: uuid.UUID, *, plan: str, org_name: str,
                           email: str | None, success_url: str, cancel_url: str, attempt: str) -> str:
        """A Checkout session for ``plan``; ``attempt`` (the caller's idempotency key) makes a
        retried request return the same session instead of a second one."""
        self._require()
        if plan not in self.plans:
            raise BillingError("plan_unknown", {"plan": plan})
        chosen = self.plans.get(plan)
        if not chosen.purchasable:
            raise BillingError("plan_not_purchasable", {"plan": plan})
        customer = await self._customer(pool, org_id, name=org_name, email=email)
        metadata = {"org_id": str(org_id), "plan": plan}
        params = {
            "mode": "subscription", "customer": customer, "client_reference_id": str(org_id),
            "line_items": [{"price": chosen.price_id, "quantity": 1}],
            "success_url": success_url, "cancel_url": cancel_url,
            "metadata": metadata, "subscription_data": {"metadata": metadata},
        }
        try:
            session = await self._client.v1.checkout.sessions.create_async(
                params, options={"idempotency_key": f"convot-checkout-{org_id}-{plan}-{attempt}"})
        except stripe.StripeError as exc:
            raise _unavailable(exc, "checkout.sessions.create") from None
        STRIPE_REQUESTS.labels("checkout.sessions.create", "ok").inc()
        return session.url

    async def portal_url(self, pool: asyncpg.Pool, org_id: uuid.UUID, *, return_url: str, attempt: str) -> str:
        self._require()
        async with scoped(pool, org_id=org_id) as conn:
            customer = await conn.fetchval("SELECT stripe_customer_id FROM billing_accounts WHERE org_id = $1", org_id)
        if not customer:
            raise BillingError("no_billing_account")
        try:
            session = await self._client.v1.billing_portal.sessions.create_async(
                {"customer": customer, "return_url": return_url},
                options={"idempotency_key": f"convot-portal-{org_id}-{attempt}"})
        except stripe.StripeError as exc:
            raise _unavailable(exc, "billing_portal.sessions.create") from None
        STRIPE_REQUESTS.labels("billing_portal.sessions.create", "ok").inc()
        return session.url


def _unavailable(exc: stripe.StripeError, operation: str) -> BillingError:
    STRIPE_REQUESTS.labels(operation, "error").inc()
    # Logged by type and Stripe's request id only: messages may echo parameters.
    log.warning("stripe request failed", extra={"error_type": type(exc).__name__,
                                                "stripe_request_id": getattr(exc, "request_id", None),
                                                "http_status": getattr(exc, "http_status", None)})
    return BillingError("billing_unavailable")
