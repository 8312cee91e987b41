"""Partner API nodes become typed records; bad shapes raise BadResponse with a stable code."""

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from engine.shopify.errors import BadResponse
from engine.shopify.records import AppEvent, Transaction, is_myshopify_domain, normalise_shop


def sub_sale(**over):
    node = {
        "__typename": "AppSubscriptionSale", "id": "gid://partners/AppSubscriptionSale/1",
        "createdAt": "2025-03-01T10:00:00.123456Z", "billingInterval": "ANNUAL",
        "app": {"id": "gid://partners/App/7", "name": "Reviews"},
        "shop": {"id": "gid://partners/Shop/3", "myshopifyDomain": "Alpha-Store.myshopify.com", "name": "Alpha"},
        "chargeId": "gid://shopify/AppSubscription/11",
        "grossAmount": {"amount": "299.00", "currencyCode": "USD"},
        "netAmount": {"amount": "239.20", "currencyCode": "USD"},
        "shopifyFee": {"amount": "59.80", "currencyCode": "USD"},
    }
    node.update(over)
    return node


def test_subscription_sale():
    tx = Transaction.from_node(sub_sale())
    assert tx.type == "APP_SUBSCRIPTION_SALE" and tx.app_gid == "gid://partners/App/7" and tx.app_name == "Reviews"
    assert tx.shop_domain == "alpha-store.myshopify.com"
    assert tx.gross.amount == Decimal("299.00") and tx.net.amount == Decimal("239.20") and tx.gross.currency == "USD"
    assert tx.created_at == datetime(2025, 3, 1, 10, 0, 0, 123456, tzinfo=timezone.utc)
    assert tx.billing_interval == "ANNUAL" and tx.charge_id == "gid://shopify/AppSubscription/11"
    assert tx.revenue.amount == Decimal("299.00")


def test_adjustment_is_a_deduction_whatever_its_sign():
    for amount in ("-10.00", "10.00"):
        tx = Transaction.from_node(sub_sale(__typename="AppSaleAdjustment", grossAmount={"amount": amount, "currencyCode": "USD"}))
        assert tx.type == "APP_SALE_ADJUSTMENT" and tx.billing_interval is None
        assert tx.revenue.amount == Decimal("-10.00")


def test_gross_missing_falls_back_to_net():
    tx = Transaction.from_node(sub_sale(grossAmount=None))
    assert tx.revenue.amount == Decimal("239.20")


def test_non_app_transactions_are_skipped():
    assert Transaction.from_node({"__typename": "ThemeSale", "id": "gid://partners/ThemeSale/1", "createdAt": "2025-01-01T00:00:00Z"}) is None


@pytest.mark.parametrize("bad", [
    {"grossAmount": {"amount": 12.5, "currencyCode": "USD"}},      # a float is not exact money
    {"grossAmount": {"amount": "NaN", "currencyCode": "USD"}},
    {"grossAmount": {"amount": "1", "currencyCode": "DOLLARS"}},
    {"createdAt": "yesterday"},
    {"id": None},
    {"app": None},
    {"shop": {"myshopifyDomain": ""}},
])
def test_bad_shapes_raise(bad):
    with pytest.raises(BadResponse) as info:
        Transaction.from_node(sub_sale(**bad))
    assert info.value.code == "shopify_bad_response"


def test_event_with_charge_and_stable_id():
    node = {"__typename": "SubscriptionChargeActivated", "type": "SUBSCRIPTION_CHARGE_ACTIVATED",
            "occurredAt": "2025-03-01T10:00:00Z", "shop": {"myshopifyDomain": "https://alpha.myshopify.com/"},
            "charge": {"id": "gid://shopify/AppSubscription/11", "name": "Pro", "test": False,
                       "amount": {"amount": "29.00", "currencyCode": "USD"}, "billingOn": "2025-03-15T00:00:00Z"}}
    event = AppEvent.from_node(node, "gid://partners/App/7")
    again = AppEvent.from_node(dict(node, occurredAt="2025-03-01T10:00:00.000000Z"), "gid://partners/App/7")
    assert event.id == again.id and event.id.startswith("evt_")
    assert event.shop_domain == "alpha.myshopify.com" and event.charge_name == "Pro"
    assert event.charge_amount.amount == Decimal("29.00") and event.billing_on.day == 15
    other_app = AppEvent.from_node(node, "gid://partners/App/8")
    assert other_app.id != event.id


def test_credit_event_reads_app_credit():
    node = {"type": "CREDIT_APPLIED", "occurredAt": "2025-03-01T10:00:00Z", "shop": {"myshopifyDomain": "a.myshopify.com"},
            "appCredit": {"id": "gid://shopify/AppCredit/5", "name": "Sorry", "test": False,
                          "amount": {"amount": "5.00", "currencyCode": "USD"}}}
    event = AppEvent.from_node(node, "gid://partners/App/7")
    assert event.charge_id == "gid://shopify/AppCredit/5" and event.charge_amount.amount == Decimal("5.00")


@pytest.mark.parametrize("value,expected", [
    ("alpha.myshopify.com", True), ("a-b-1.myshopify.com", True), ("ALPHA.myshopify.com", False),
    ("alpha.myshopify.com.evil.com", False), ("evil.com/alpha.myshopify.com", False), (".myshopify.com", False),
    ("-x.myshopify.com", False), ("al pha.myshopify.com", False), ("", False), (None, False),
])
def test_myshopify_domain(value, expected):
    assert is_myshopify_domain(value) is expected


def test_normalise_shop():
    assert normalise_shop(" HTTPS://Alpha.MyShopify.com/admin ") == "alpha.myshopify.com"
    with pytest.raises(BadResponse):
        normalise_shop(None)
