"""Billing through the real admin API: owner-only pages, Checkout/portal, the signed webhook, seat limits."""

import time

import pytest

from admin_api import keys
from convot.db import scoped
from convot.embedded import free_port
from tests.admin_api.conftest import add_member, make_org, new_email, remember, signed_in
from tests.fakes.stripe_api import FakeStripe, event, invoice, sign, subscription

SECRET = "whsec_routes_1f2e3d4c5b6a79880f1e2d3c4b5a6978"
remember(SECRET, FakeStripe.secret_key)
WEBHOOK = "/v1/billing/stripe/webhook"


@pytest.fixture(scope="module")
async def stripe_fake():
    async with FakeStripe() as fake:
        yield fake


@pytest.fixture(scope="module")
def api_config(servers, stripe_fake):
    return servers.config(smtp={"port": free_port()}, admin_api={"trusted_proxies": "127.0.0.1/32"},
                          billing={"stripe_api_base": stripe_fake.base_url, "stripe_secret_key": stripe_fake.secret_key,
                                   "stripe_webhook_secret": SECRET, "price_ids": "team=price_1Team,business=price_1Biz"})


async def owner_with_org(client_factory, app):
    owner, owner_id, _ = await signed_in(client_factory, app)
    org = await make_org(app, owner_id, "Apps Inc")
    return owner, org


async def post_event(client, raw: bytes, header: str | None = None):
    return await client.call("POST", WEBHOOK, raw=raw, headers={
        "Content-Type": "application/json", "Stripe-Signature": header if header is not None else sign(raw, SECRET)})


async def customer_of(app, org):
    async with scoped(app[keys.DB], org_id=org) as conn:
        return await conn.fetchval("SELECT stripe_customer_id FROM billing_accounts WHERE org_id = $1", org)


async def test_seat_limit_counts_pending_invites_until_the_plan_changes(client_factory, app, stripe_fake):
    owner, org = await owner_with_org(client_factory, app)
    for _ in range(4):                                          # free: 5 seats = the owner + 4 invites
        invited = await owner.call("POST", f"/v1/orgs/{org}/invites", {"email": new_email(), "role": "agent"})
        assert invited.status == 201
    refused = await owner.call("POST", f"/v1/orgs/{org}/invites", {"email": new_email(), "role": "agent"})
    assert (refused.status, refused.code) == (409, "seat_limit_reached")
    assert refused.body["error"]["details"] == {"plan": "free", "seats": 5, "members": 1, "pending_invites": 4}
    assert "seats" in refused.body["error"]["message"]

    # Buy Team through Checkout; Stripe's webhook activates it; the invite goes through.
    checkout = await owner.call("POST", f"/v1/orgs/{org}/billing/checkout", {"plan": "team"},
                                headers={"Idempotency-Key": "click-1"})
    assert checkout.status == 200 and checkout.body["url"].startswith("https://checkout.stripe.com/")
    customer = await customer_of(app, org)
    sub = subscription("sub_seat", customer, "price_1Team", "active", period_end=int(time.time()) + 86400 * 30)
    stripe = await client_factory()
    answer = await post_event(stripe, event("customer.subscription.created", sub, created=int(time.time())))
    assert (answer.status, answer.body) == (200, {"received": True, "outcome": "processed"})
    assert (await owner.call("POST", f"/v1/orgs/{org}/invites", {"email": new_email(), "role": "agent"})).status == 201
    shown = await owner.call("GET", f"/v1/orgs/{org}/billing")
    assert shown.body["plan"] == "team" and shown.body["seats"] == {"limit": 10, "members": 1, "pending_invites": 5}


async def test_checkout_is_idempotent_per_click_and_portal_needs_a_customer(client_factory, app, stripe_fake):
    owner, org = await owner_with_org(client_factory, app)
    portal = await owner.call("POST", f"/v1/orgs/{org}/billing/portal")
    assert (portal.status, portal.code) == (409, "no_billing_account")
    a = await owner.call("POST", f"/v1/orgs/{org}/billing/checkout", {"plan": "business"}, headers={"Idempotency-Key": "k1"})
    b = await owner.call("POST", f"/v1/orgs/{org}/billing/checkout", {"plan": "business"}, headers={"Idempotency-Key": "k1"})
    c = await owner.call("POST", f"/v1/orgs/{org}/billing/checkout", {"plan": "business"}, headers={"Idempotency-Key": "k2"})
    assert a.body["url"] == b.body["url"] != c.body["url"]
    free = await owner.call("POST", f"/v1/orgs/{org}/billing/checkout", {"plan": "free"})
    assert (free.status, free.code) == (422, "plan_not_purchasable")
    portal = await owner.call("POST", f"/v1/orgs/{org}/billing/portal")
    assert portal.status == 200 and portal.body["url"].startswith("https://billing.stripe.com/")
    _path, params, _key = stripe_fake.requests[-1]
    assert params["return_url"].startswith(app[keys.CONFIG].admin_api.public_url)


async def test_billing_is_owner_only_but_everyone_sees_the_banner(client_factory, app):
    owner, org = await owner_with_org(client_factory, app)
    admin, admin_id, _ = await signed_in(client_factory, app)
    await add_member(app, org, admin_id, "admin")
    for method, path, body in (("GET", "/billing", None), ("POST", "/billing/checkout", {"plan": "team"}),
                               ("POST", "/billing/portal", None)):
        answer = await admin.call(method, f"/v1/orgs/{org}{path}", body)
        assert (answer.status, answer.code) == (403, "forbidden"), path
    assert (await admin.call("GET", f"/v1/orgs/{org}/billing/banner")).body == {"banner": None}

    await owner.call("POST", f"/v1/orgs/{org}/billing/checkout", {"plan": "team"})
    customer = await customer_of(app, org)
    stripe = await client_factory()
    now = int(time.time())
    sub = subscription("sub_pd", customer, "price_1Team", "active", period_end=now + 86400)
    await post_event(stripe, event("customer.subscription.created", sub, created=now - 60))
    await post_event(stripe, event("invoice.payment_failed", invoice(customer, "sub_pd", "open"), created=now))
    assert (await admin.call("GET", f"/v1/orgs/{org}/billing/banner")).body == {"banner": "payment_failed"}
    shown = await owner.call("GET", f"/v1/orgs/{org}/billing")
    assert (shown.body["status"], shown.body["plan"]) == ("past_due", "team")   # keeps its plan


async def test_webhook_refuses_bad_signatures_stale_timestamps_and_replays(client_factory, app):
    owner, org = await owner_with_org(client_factory, app)
    await owner.call("POST", f"/v1/orgs/{org}/billing/checkout", {"plan": "team"})
    customer = await customer_of(app, org)
    stripe = await client_factory()
    now = int(time.time())
    raw = event("customer.subscription.updated",
                subscription("sub_w", customer, "price_1Biz", "active", period_end=now + 86400), created=now)

    async def state():
        async with scoped(app[keys.DB], org_id=org) as conn:
            return tuple(await conn.fetchrow("SELECT plan, status, state_event_created FROM billing_accounts WHERE org_id = $1", org))

    before = await state()
    for header, code in ((sign(raw, "whsec_not_ours"), "webhook_signature_invalid"),
                         (sign(raw, SECRET, timestamp=now - 301), "webhook_timestamp_outside_tolerance"),
                         ("", "webhook_signature_invalid")):
        answer = await post_event(stripe, raw, header)
        assert (answer.status, answer.code) == (400, code)
    assert await state() == before

    # updated arrives before created: the newer state stays.
    assert (await post_event(stripe, raw)).body["outcome"] == "processed"
    created = event("customer.subscription.created",
                    subscription("sub_w", customer, "price_1Team", "incomplete", period_end=now + 86400), created=now - 5)
    assert (await post_event(stripe, created)).body["outcome"] == "processed"
    assert (await state())[:2] == ("business", "active")
    # The same event id again: acknowledged, nothing changes.
    after = await state()
    replay = await post_event(stripe, raw, sign(raw, SECRET))
    assert (replay.status, replay.body["outcome"]) == (200, "duplicate")
    assert await state() == after
