"""Linking contacts to merchants (verified shops only), the merchant panel, the churn conversation."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest

from convot.db import scoped
from engine.shopify import connections
from engine.shopify.revenue import churn_conversation, merchant_for_contact, verified_shop
from engine.shopify.runner import sync_one
from tests.engine.shopify import partner_dataset as ds


@pytest.mark.parametrize("kw,expected", [
    ({"shop": "alpha.myshopify.com", "shop_verified": True, "external_id": None, "verified": False}, "alpha.myshopify.com"),
    ({"shop": "Alpha.MyShopify.com ", "shop_verified": True, "external_id": None, "verified": False}, "alpha.myshopify.com"),
    ({"shop": "alpha.myshopify.com", "shop_verified": False, "external_id": None, "verified": False}, None),
    ({"shop": "alpha.myshopify.com", "shop_verified": False, "external_id": "alpha.myshopify.com", "verified": False}, None),
    ({"shop": None, "shop_verified": False, "external_id": "alpha.myshopify.com", "verified": True}, "alpha.myshopify.com"),
    ({"shop": None, "shop_verified": False, "external_id": "user-42", "verified": True}, None),
    ({"shop": "alpha.com", "shop_verified": True, "external_id": None, "verified": False}, None),
])
def test_verified_shop(kw, expected):
    assert verified_shop(**kw) == expected


async def add_contact(owner_db, org, **fields) -> uuid.UUID:
    columns = ", ".join(["org_id", *fields])
    params = ", ".join(f"${i}" for i in range(1, len(fields) + 2))
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", str(org))
        return await owner_db.fetchval(f"INSERT INTO contacts ({columns}) VALUES ({params}) RETURNING id",
                                       org, *fields.values())


async def add_conversation(owner_db, org, contact, last_message_at, shopify_app_gid=None) -> uuid.UUID:
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", str(org))
        app_id = await owner_db.fetchval(
            "INSERT INTO apps (org_id, public_key, name, identity_secret_enc, shopify_app_gid) "
            "VALUES ($1, $2, 'Widget', '\\x00', $3) RETURNING id", org, f"app_{uuid.uuid4().hex}", shopify_app_gid)
        return await owner_db.fetchval(
            "INSERT INTO conversations (org_id, app_id, contact_id, status, last_message_at) "
            "VALUES ($1, $2, $3, 'resolved', $4) RETURNING id", org, app_id, contact, last_message_at)


@pytest.fixture
async def synced(db, org, fake, settings, session, encryptor):
    ds.build(fake)
    await connections.connect(db, encryptor, session, settings, org_id=org, partner_org_id=fake.partner_org_id,
                              token=fake.token)
    assert (await sync_one(db, settings, session, encryptor, org, now=lambda: ds.NOW)).error is None
    return org


async def test_verified_shop_sees_the_merchant_panel(db, owner_db, synced):
    contact = await add_contact(owner_db, synced, shop="alpha.myshopify.com", shop_verified=True)
    panel = await merchant_for_contact(db, synced, contact)
    assert panel["shop_domain"] == "alpha.myshopify.com"
    by_app = {a["app"]["app_gid"]: a for a in panel["apps"]}
    reviews, upsell = by_app[ds.REVIEWS], by_app[ds.UPSELL]
    assert reviews["app"]["name"] == "Reviews Pro" and reviews["plan"] == "Pro" and reviews["status"] == "active"
    assert Decimal(reviews["mrr"]["amount"]) == Decimal("29") and reviews["mrr"]["currency"] == "USD"
    assert Decimal(reviews["lifetime_value"]["amount"]) == Decimal("260")
    assert Decimal(upsell["mrr"]["amount"]) == Decimal("24.9167")
    events = reviews["recent_events"]
    assert events[0]["type"] == "SUBSCRIPTION_APPROACHING_CAPPED_AMOUNT"
    assert [e["occurred_at"] for e in events] == sorted((e["occurred_at"] for e in events), reverse=True)
    usage = next(e for e in events if e["type"] == "USAGE_CHARGE_APPLIED")
    assert usage["charge"] == {"name": "100 extra review emails", "amount": "3.50", "currency": "USD"}


async def test_forged_shop_gets_nothing(db, owner_db, synced):
    forged = await add_contact(owner_db, synced, shop="alpha.myshopify.com", shop_verified=False)
    assert await merchant_for_contact(db, synced, forged) is None
    unverified_external = await add_contact(owner_db, synced, external_id="alpha.myshopify.com", verified=False)
    assert await merchant_for_contact(db, synced, unverified_external) is None


async def test_verified_external_id_that_is_a_shop_links(db, owner_db, synced):
    contact = await add_contact(owner_db, synced, external_id="zeta.myshopify.com", verified=True)
    panel = await merchant_for_contact(db, synced, contact)
    assert [a["billing_interval"] for a in panel["apps"]] == ["EVERY_90_DAYS"]


async def test_contact_of_another_organisation_is_invisible(db, owner_db, synced):
    from tests.engine.shopify.conftest import make_org

    other = await make_org(owner_db, "Other")
    theirs = await add_contact(owner_db, other, shop="alpha.myshopify.com", shop_verified=True)
    assert await merchant_for_contact(db, synced, theirs) is None
    # ... and their own verified contact sees no merchant: the revenue data is ours.
    panel = await merchant_for_contact(db, other, theirs)
    assert panel == {"shop_domain": "alpha.myshopify.com", "apps": []}


async def test_churn_conversation_is_the_recent_verified_one(db, owner_db, synced):
    now = ds.NOW
    verified = await add_contact(owner_db, synced, shop="delta.myshopify.com", shop_verified=True)
    forged = await add_contact(owner_db, synced, shop="delta.myshopify.com", shop_verified=False)
    await add_conversation(owner_db, synced, verified, now - timedelta(days=9))             # too old
    await add_conversation(owner_db, synced, forged, now - timedelta(hours=1))              # unverified
    other_app = await add_conversation(owner_db, synced, verified, now - timedelta(hours=2), "gid://partners/App/999")
    recent = await add_conversation(owner_db, synced, verified, now - timedelta(days=3))
    linked = await add_conversation(owner_db, synced, verified, now - timedelta(days=5), ds.REVIEWS)
    async with scoped(db, org_id=synced) as conn:
        # The conversation from the Convot app linked to this Shopify app wins; another app's never.
        assert await churn_conversation(conn, synced, "delta.myshopify.com", ds.REVIEWS, now) == linked
        assert await churn_conversation(conn, synced, "delta.myshopify.com", ds.UPSELL, now) == recent
        assert await churn_conversation(conn, synced, "nobody.myshopify.com", ds.REVIEWS, now) is None
    assert other_app not in (linked, recent)
