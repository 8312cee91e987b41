"""Billing against the real PostgreSQL and the fake Stripe API: webhooks, limits, Checkout, portal."""

import datetime as dt
import time
import uuid

import pytest

from admin_api.billing.errors import BillingError
from admin_api.billing.plans import load_plans
from admin_api.billing.service import (
    StripeBilling,
    check_app_available,
    check_seat_available,
    overview,
    process_event,
)
from admin_api.billing.webhooks import verify_event
from convot.db import scoped
from tests.admin_api.conftest import remember
from tests.engine.shopify.conftest import make_org
from tests.fakes.stripe_api import FakeStripe, checkout_completed, event, invoice, sign, subscription

SECRET = "whsec_test_0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d"
PRICES = "team=price_1Team,business=price_1Biz"
PLANS = load_plans("configs/plans.toml", PRICES)
remember(SECRET, FakeStripe.secret_key)


@pytest.fixture
async def stripe_fake():
    async with FakeStripe() as fake:
        yield fake


@pytest.fixture
def billing_settings(servers, stripe_fake):
    return servers.config(billing={"stripe_api_base": stripe_fake.base_url, "stripe_secret_key": stripe_fake.secret_key,
                                   "stripe_webhook_secret": SECRET, "price_ids": PRICES,
                                   "request_timeout": 2.0}).billing


@pytest.fixture
async def billing(billing_settings):
    service = StripeBilling(billing_settings, PLANS)
    yield service
    await service.close()


@pytest.fixture
async def org(owner_db):
    return await make_org(owner_db)


async def with_customer(db, org):
    customer = "cus_T" + uuid.uuid4().hex[:12]
    async with scoped(db, org_id=org) as conn:
        await conn.execute("INSERT INTO billing_accounts (org_id, stripe_customer_id) VALUES ($1, $2)", org, customer)
    return customer


async def account(db, org):
    async with scoped(db, org_id=org) as conn:
        row = await conn.fetchrow("SELECT * FROM billing_accounts WHERE org_id = $1", org)
        plan = await conn.fetchval("SELECT plan FROM organisations WHERE id = $1", org)
        events = await conn.fetchval("SELECT count(*) FROM stripe_events WHERE org_id = $1", org)
    return dict(row), plan, events


async def deliver(db, raw: bytes, header: str | None = None):
    """What the webhook route does: verify the raw body, then process."""
    verified = verify_event(raw, header if header is not None else sign(raw, SECRET), SECRET)
    return await process_event(db, PLANS, verified)


def sub(customer, status, price="price_1Team", sid="sub_1", end=None):
    return subscription(sid, customer, price, status, period_end=end or int(time.time()) + 30 * 86400)


async def test_signed_webhooks_drive_the_account(db, org):
    customer = await with_customer(db, org)
    now = int(time.time())
    assert await deliver(db, event("checkout.session.completed",
                                   checkout_completed("cs_1", customer, "sub_1", str(org), "team"), created=now - 5)) == "processed"
    assert await deliver(db, event("customer.subscription.created", sub(customer, "active"), created=now - 5)) == "processed"
    row, plan, _ = await account(db, org)
    assert (row["status"], row["plan"], row["stripe_subscription_id"], plan) == ("active", "team", "sub_1", "team")

    assert await deliver(db, event("invoice.payment_failed", invoice(customer, "sub_1", "open"), created=now)) == "processed"
    row, plan, _ = await account(db, org)
    assert (row["status"], plan) == ("past_due", "team")        # keeps its plan: chat goes on
    async with scoped(db, org_id=org) as conn:
        shown = await overview(conn, org, PLANS)
    assert shown["banner"] == "payment_failed" and shown["plan"] == "team"


async def test_replayed_event_id_changes_nothing(db, org):
    customer = await with_customer(db, org)
    now = int(time.time())
    raw = event("customer.subscription.created", sub(customer, "active"), created=now - 10, event_id="evt_replayed")
    assert await deliver(db, raw) == "processed"
    await deliver(db, event("customer.subscription.deleted", sub(customer, "canceled"), created=now))
    before = await account(db, org)
    # The same event again (a replay, even freshly signed) is recognised by its id.
    assert await deliver(db, raw, sign(raw, SECRET)) == "duplicate"
    assert await account(db, org) == before
    assert before[0]["status"] == "canceled" and before[1] == "free"


async def test_bad_signature_and_stale_timestamp_change_nothing(db, org):
    customer = await with_customer(db, org)
    before = await account(db, org)
    raw = event("customer.subscription.created", sub(customer, "active"), created=int(time.time()))
    for header in (sign(raw, "whsec_wrong"), sign(raw, SECRET, timestamp=int(time.time()) - 600), "t=1,v1=00", ""):
        with pytest.raises(BillingError):
            await deliver(db, raw, header)
    assert await account(db, org) == before


async def test_updated_before_created_ends_right(db, org):
    customer = await with_customer(db, org)
    now = int(time.time())
    updated = event("customer.subscription.updated", sub(customer, "active", price="price_1Biz"), created=now)
    created = event("customer.subscription.created", sub(customer, "incomplete"), created=now - 3)
    await deliver(db, updated)
    await deliver(db, created)
    row, plan, events = await account(db, org)
    assert (row["status"], row["plan"], plan, events) == ("active", "business", "business", 2)
    assert row["state_event_created"] == now


async def test_unknown_customer_is_acknowledged_and_stores_nothing(db, org):
    raw = event("customer.subscription.created", sub("cus_not_ours", "active"), created=int(time.time()))
    assert await deliver(db, raw) == "unknown_customer"


async def test_another_organisations_customer_cannot_touch_ours(db, owner_db, org):
    ours = await with_customer(db, org)
    other = await make_org(owner_db, "Other")
    theirs = await with_customer(db, other)
    await deliver(db, event("customer.subscription.created", sub(theirs, "active", sid="sub_X"), created=int(time.time())))
    row, plan, events = await account(db, org)
    assert (row["status"], plan, events, row["stripe_customer_id"]) == ("none", "free", 0, ours)


async def add_invite(owner_db, org, *, expires_in=dt.timedelta(days=7), revoked=False, accepted=False):
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", str(org))
        await owner_db.execute(
            "INSERT INTO invites (org_id, email, role, token_hash, expires_at, revoked_at, accepted_at) "
            "VALUES ($1, $2, 'agent', $3, now() + $4::interval, $5, $6)",
            org, f"{uuid.uuid4().hex[:8]}@example.com", uuid.uuid4().hex, expires_in,
            dt.datetime.now(dt.timezone.utc) if revoked else None, dt.datetime.now(dt.timezone.utc) if accepted else None)


async def test_pending_invites_count_as_seats(db, owner_db, org):
    # Free: 5 seats. The owner is one member; three invites are pending.
    for _ in range(3):
        await add_invite(owner_db, org)
    await add_invite(owner_db, org, expires_in=dt.timedelta(days=-1))   # expired: no seat
    await add_invite(owner_db, org, revoked=True)                       # revoked: no seat
    await add_invite(owner_db, org, accepted=True)                      # accepted: no longer pending
    async with scoped(db, org_id=org) as conn:
        await check_seat_available(conn, org, PLANS)
    await add_invite(owner_db, org)                                     # pending: takes the fifth seat
    with pytest.raises(BillingError) as info:
        async with scoped(db, org_id=org) as conn:
            await check_seat_available(conn, org, PLANS)
    assert info.value.code == "seat_limit_reached" and info.value.status == 409
    assert info.value.details == {"plan": "free", "seats": 5, "members": 1, "pending_invites": 4}
    # Subscribing to Team (10 seats) lifts it.
    customer = await with_customer(db, org)
    await deliver(db, event("customer.subscription.created", sub(customer, "active"), created=int(time.time())))
    async with scoped(db, org_id=org) as conn:
        await check_seat_available(conn, org, PLANS)
        shown = await overview(conn, org, PLANS)
    assert shown["seats"] == {"limit": 10, "members": 1, "pending_invites": 4}


async def test_app_limit(db, owner_db, org):
    async with scoped(db, org_id=org) as conn:
        await check_app_available(conn, org, PLANS)
        await conn.execute("INSERT INTO apps (org_id, public_key, name, identity_secret_enc) VALUES ($1, $2, 'A', '\\x00')",
                           org, f"app_{uuid.uuid4().hex}")
    with pytest.raises(BillingError) as info:
        async with scoped(db, org_id=org) as conn:
            await check_app_available(conn, org, PLANS)
    assert info.value.code == "app_limit_reached"


async def test_checkout_creates_one_customer_and_replays_with_the_same_attempt(db, org, billing, stripe_fake):
    kw = dict(plan="team", org_name="Acme Apps", email="owner@example.com",
              success_url="https://app.example/billing?ok=1", cancel_url="https://app.example/billing")
    url = await billing.checkout_url(db, org, attempt="a1", **kw)
    again = await billing.checkout_url(db, org, attempt="a1", **kw)
    other = await billing.checkout_url(db, org, attempt="a2", **kw)
    assert url.startswith("https://checkout.stripe.com/c/pay/cs_test_") and again == url and other != url
    assert len(stripe_fake.customers) == 1 and len(stripe_fake.checkout_sessions) == 2
    customer = next(iter(stripe_fake.customers.values()))
    assert customer["metadata"] == {"org_id": str(org)}
    path, params, key = stripe_fake.requests[-1]
    assert path == "/v1/checkout/sessions" and key == f"convot-checkout-{org}-team-a2"
    assert params["line_items"] == [{"price": "price_1Team", "quantity": "1"}]
    assert params["customer"] == customer["id"] and params["client_reference_id"] == str(org)
    assert params["subscription_data"]["metadata"] == {"org_id": str(org), "plan": "team"}
    row, _plan, _ = await account(db, org)
    assert row["stripe_customer_id"] == customer["id"]


async def test_checkout_refusals(db, org, billing, billing_settings, servers):
    kw = dict(org_name="Acme", email=None, success_url="https://x/ok", cancel_url="https://x/no", attempt="a")
    for plan, code in (("free", "plan_not_purchasable"), ("gold", "plan_unknown")):
        with pytest.raises(BillingError) as info:
            await billing.checkout_url(db, org, plan=plan, **kw)
        assert info.value.code == code
    unconfigured = StripeBilling(servers.config(billing={"stripe_secret_key": ""}).billing, PLANS)
    try:
        with pytest.raises(BillingError) as info:
            await unconfigured.checkout_url(db, org, plan="team", **kw)
        assert info.value.code == "billing_not_configured"
    finally:
        await unconfigured.close()


async def test_stripe_down_is_a_clean_error(db, org, billing, stripe_fake):
    stripe_fake.fail_next("unavailable", 5)
    with pytest.raises(BillingError) as info:
        await billing.checkout_url(db, org, plan="team", org_name="Acme", email=None,
                                   success_url="https://x/ok", cancel_url="https://x/no", attempt="a")
    assert info.value.code == "billing_unavailable" and info.value.status == 503
    async with scoped(db, org_id=org) as conn:
        assert await conn.fetchval("SELECT count(*) FROM billing_accounts WHERE org_id = $1", org) == 0


async def test_portal(db, org, billing, stripe_fake):
    with pytest.raises(BillingError) as info:
        await billing.portal_url(db, org, return_url="https://x/billing", attempt="p1")
    assert info.value.code == "no_billing_account"
    await billing.checkout_url(db, org, plan="team", org_name="Acme", email=None,
                               success_url="https://x/ok", cancel_url="https://x/no", attempt="a")
    url = await billing.portal_url(db, org, return_url="https://x/billing", attempt="p1")
    assert url.startswith("https://billing.stripe.com/p/session/test_")
    assert await billing.portal_url(db, org, return_url="https://x/billing", attempt="p1") == url


async def test_stripe_hanging_is_bounded_by_the_timeout(db, org, servers, stripe_fake):
    settings = servers.config(billing={"stripe_api_base": stripe_fake.base_url, "stripe_secret_key": stripe_fake.secret_key,
                                       "price_ids": PRICES, "request_timeout": 0.3}).billing
    service = StripeBilling(settings, PLANS)
    stripe_fake.fail_next("hang", 3)
    try:
        with pytest.raises(BillingError) as info:
            await service.checkout_url(db, org, plan="team", org_name="Acme", email=None,
                                       success_url="https://x/ok", cancel_url="https://x/no", attempt="h")
        assert info.value.code == "billing_unavailable"
    finally:
        await service.close()
