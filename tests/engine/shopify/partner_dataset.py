"""A realistic Partner organisation for the sync tests, with every expected value worked out by hand.

Three apps (30-day, annual and 90-day plans), every app transaction type (subscription, usage
and one-time sales, an adjustment, a credit) and every lifecycle event kind. ``D(n)`` is n days
before ``NOW``. The expected merchants below are computed by hand, in the comments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from tests.fakes.shopify_partner import FakePartnerApi

NOW = datetime.now(timezone.utc).replace(second=0, microsecond=0)


def D(days: float) -> datetime:
    return NOW - timedelta(days=days)


REVIEWS = "gid://partners/App/4001"     # 30-day plans
UPSELL = "gid://partners/App/4002"      # annual plans
BUNDLES = "gid://partners/App/4003"     # 90-day plans (see the fake's note on EVERY_90_DAYS)


def charge(cid: str, name: str, amount: str, billing_on: datetime | None = None, test: bool = False) -> dict:
    return {"id": f"gid://shopify/AppSubscription/{cid}", "name": name, "amount": amount, "billingOn": billing_on,
            "test": test}


def cid(c: str) -> str:
    return f"gid://shopify/AppSubscription/{c}"


def build(fake: FakePartnerApi) -> None:
    fake.add_app("Reviews Pro", REVIEWS)
    fake.add_app("Upsell Wizard", UPSELL)
    fake.add_app("Bundle Kit", BUNDLES)
    sub, ev = fake.add_transaction, fake.add_event

    # 1. alpha / Reviews: Pro 29.00 every 30 days since D200, usage and a one-time sale.
    #    MRR 29.00; lifetime 7 x 29.00 + 2 x 3.50 + 50.00 = 260.00
    pro = charge("a1", "Pro", "29.00", billing_on=D(200))
    ev(REVIEWS, "RELATIONSHIP_INSTALLED", "alpha.myshopify.com", D(200))
    ev(REVIEWS, "SUBSCRIPTION_CHARGE_ACCEPTED", "alpha.myshopify.com", D(200), charge=pro)
    ev(REVIEWS, "SUBSCRIPTION_CHARGE_ACTIVATED", "alpha.myshopify.com", D(200), charge=pro)
    for days in (200, 170, 140, 110, 80, 50, 20):
        sub("AppSubscriptionSale", REVIEWS, "alpha.myshopify.com", D(days) + timedelta(minutes=1), "29.00",
            charge_id=cid("a1"), interval="EVERY_30_DAYS")
    for days in (45, 15):
        usage = {"id": f"gid://shopify/AppUsageRecord/u{days}", "name": "100 extra review emails", "amount": "3.50"}
        ev(REVIEWS, "USAGE_CHARGE_APPLIED", "alpha.myshopify.com", D(days), charge=usage)
        sub("AppUsageSale", REVIEWS, "alpha.myshopify.com", D(days) + timedelta(minutes=2), "3.50",
            charge_id=usage["id"])
    onetime = {"id": "gid://shopify/AppPurchaseOneTime/o1", "name": "Review import", "amount": "50.00"}
    ev(REVIEWS, "ONE_TIME_CHARGE_ACCEPTED", "alpha.myshopify.com", D(100), charge=onetime)
    ev(REVIEWS, "ONE_TIME_CHARGE_ACTIVATED", "alpha.myshopify.com", D(100), charge=onetime)
    sub("AppOneTimeSale", REVIEWS, "alpha.myshopify.com", D(100) + timedelta(minutes=1), "50.00",
        charge_id=onetime["id"])
    ev(REVIEWS, "SUBSCRIPTION_CAPPED_AMOUNT_UPDATED", "alpha.myshopify.com", D(60), charge=pro)
    ev(REVIEWS, "SUBSCRIPTION_APPROACHING_CAPPED_AMOUNT", "alpha.myshopify.com", D(14), charge=pro)

    # 2. beta / Reviews: Basic 9.99 with a 14-day trial, paid 3 times, one refunded, now frozen.
    #    status frozen, MRR 0; lifetime 3 x 9.99 - 9.99 = 19.98
    basic = charge("b1", "Basic", "9.99", billing_on=D(76))
    ev(REVIEWS, "RELATIONSHIP_INSTALLED", "beta.myshopify.com", D(90))
    ev(REVIEWS, "SUBSCRIPTION_CHARGE_ACTIVATED", "beta.myshopify.com", D(90), charge=basic)
    for days in (76, 46, 16):
        sub("AppSubscriptionSale", REVIEWS, "beta.myshopify.com", D(days), "9.99", charge_id=cid("b1"),
            interval="EVERY_30_DAYS")
    sub("AppSaleAdjustment", REVIEWS, "beta.myshopify.com", D(15), "-9.99", charge_id=cid("b1"))
    ev(REVIEWS, "SUBSCRIPTION_CHARGE_FROZEN", "beta.myshopify.com", D(10), charge=basic)

    # 3. gamma / Reviews: installed 5 days ago, Pro with a trial until D(-9): trialing, MRR 0.
    ev(REVIEWS, "RELATIONSHIP_INSTALLED", "gamma.myshopify.com", D(5))
    ev(REVIEWS, "SUBSCRIPTION_CHARGE_ACTIVATED", "gamma.myshopify.com", D(5),
       charge=charge("g1", "Pro", "29.00", billing_on=D(-9)))

    # 4. delta / Reviews: Pro for 3 periods, cancelled and uninstalled 20 hours ago (a churn notice).
    #    status churned, MRR 0, plan none; lifetime 3 x 29.00 = 87.00
    ev(REVIEWS, "RELATIONSHIP_INSTALLED", "delta.myshopify.com", D(120))
    ev(REVIEWS, "SUBSCRIPTION_CHARGE_ACTIVATED", "delta.myshopify.com", D(120), charge=charge("d1", "Pro", "29.00"))
    for days in (120, 90, 60):
        sub("AppSubscriptionSale", REVIEWS, "delta.myshopify.com", D(days), "29.00", charge_id=cid("d1"),
            interval="EVERY_30_DAYS")
    ev(REVIEWS, "SUBSCRIPTION_CHARGE_CANCELED", "delta.myshopify.com", D(20 / 24), charge=charge("d1", "Pro", "29.00"))
    ev(REVIEWS, "RELATIONSHIP_UNINSTALLED", "delta.myshopify.com", D(20 / 24), reason="Too expensive")

    # 5. alpha / Upsell: Annual Growth 299.00 a year, a 20.00 credit.
    #    MRR 299 / 12 = 24.91666.. -> 24.9167; lifetime 299.00 - 20.00 = 279.00
    ev(UPSELL, "RELATIONSHIP_INSTALLED", "alpha.myshopify.com", D(300))
    ev(UPSELL, "SUBSCRIPTION_CHARGE_ACTIVATED", "alpha.myshopify.com", D(300),
       charge=charge("u1", "Annual Growth", "299.00"))
    sub("AppSubscriptionSale", UPSELL, "alpha.myshopify.com", D(300), "299.00", charge_id=cid("u1"), interval="ANNUAL")
    credit = {"id": "gid://shopify/AppCredit/k1", "name": "Downtime credit", "amount": "20.00"}
    ev(UPSELL, "CREDIT_PENDING", "alpha.myshopify.com", D(200), charge=credit)
    ev(UPSELL, "CREDIT_APPLIED", "alpha.myshopify.com", D(200), charge=credit)
    sub("AppSaleCredit", UPSELL, "alpha.myshopify.com", D(200), "-20.00", charge_id=credit["id"])

    # 6. epsilon / Upsell: since D400 (older than the 365-day retention: folded into a baseline),
    #    Annual Starter 120.00, store paused D60 and back D50.  MRR 120 / 12 = 10.00; lifetime 240.00
    ev(UPSELL, "RELATIONSHIP_INSTALLED", "epsilon.myshopify.com", D(400))
    ev(UPSELL, "SUBSCRIPTION_CHARGE_ACTIVATED", "epsilon.myshopify.com", D(400),
       charge=charge("e1", "Annual Starter", "120.00"))
    for days in (400, 35):
        sub("AppSubscriptionSale", UPSELL, "epsilon.myshopify.com", D(days), "120.00", charge_id=cid("e1"),
            interval="ANNUAL")
    ev(UPSELL, "RELATIONSHIP_DEACTIVATED", "epsilon.myshopify.com", D(60))
    ev(UPSELL, "RELATIONSHIP_REACTIVATED", "epsilon.myshopify.com", D(50))

    # 7. zeta / Bundles: Quarterly 87.00 every 90 days.  MRR 87 x 30 / 90 = 29.00; lifetime 174.00
    quarterly = charge("z1", "Quarterly", "87.00")
    ev(BUNDLES, "RELATIONSHIP_INSTALLED", "zeta.myshopify.com", D(100))
    ev(BUNDLES, "SUBSCRIPTION_CHARGE_ACCEPTED", "zeta.myshopify.com", D(100), charge=quarterly)
    ev(BUNDLES, "SUBSCRIPTION_CHARGE_ACTIVATED", "zeta.myshopify.com", D(100), charge=quarterly)
    for days in (100, 10):
        sub("AppSubscriptionSale", BUNDLES, "zeta.myshopify.com", D(days), "87.00", charge_id=cid("z1"),
            interval="EVERY_90_DAYS")

    # 8. eta / Bundles: declined the plan, left 3 days ago (outside the 48-hour notice window).
    ev(BUNDLES, "RELATIONSHIP_INSTALLED", "eta.myshopify.com", D(30))
    ev(BUNDLES, "SUBSCRIPTION_CHARGE_DECLINED", "eta.myshopify.com", D(30), charge=charge("h1", "Quarterly", "87.00"))
    ev(BUNDLES, "RELATIONSHIP_UNINSTALLED", "eta.myshopify.com", D(3))

    # 9. theta / Reviews: a development store on a test charge: active, earns nothing.
    ev(REVIEWS, "RELATIONSHIP_INSTALLED", "theta.myshopify.com", D(8))
    ev(REVIEWS, "SUBSCRIPTION_CHARGE_ACTIVATED", "theta.myshopify.com", D(8),
       charge=charge("t1", "Pro", "29.00", test=True))
    ev(REVIEWS, "SUBSCRIPTION_CHARGE_EXPIRED", "theta.myshopify.com", D(7), charge=charge("x1", "Plus", "49.00"))
    ev(REVIEWS, "ONE_TIME_CHARGE_DECLINED", "theta.myshopify.com", D(7),
       charge={"id": "gid://shopify/AppPurchaseOneTime/o2", "name": "Setup", "amount": "10.00"})
    ev(REVIEWS, "ONE_TIME_CHARGE_EXPIRED", "theta.myshopify.com", D(6),
       charge={"id": "gid://shopify/AppPurchaseOneTime/o3", "name": "Setup", "amount": "10.00"})
    ev(REVIEWS, "CREDIT_FAILED", "theta.myshopify.com", D(6),
       charge={"id": "gid://shopify/AppCredit/k2", "name": "Goodwill", "amount": "5.00"})


@dataclass(frozen=True)
class Expected:
    status: str
    plan: str | None
    mrr: str
    lifetime: str
    interval: str | None = None


EXPECTED = {
    ("alpha.myshopify.com", REVIEWS): Expected("active", "Pro", "29.0000", "260.0000", "EVERY_30_DAYS"),
    ("beta.myshopify.com", REVIEWS): Expected("frozen", "Basic", "0", "19.9800", "EVERY_30_DAYS"),
    ("gamma.myshopify.com", REVIEWS): Expected("trialing", "Pro", "0", "0"),
    ("delta.myshopify.com", REVIEWS): Expected("churned", None, "0", "87.0000"),
    ("alpha.myshopify.com", UPSELL): Expected("active", "Annual Growth", "24.9167", "279.0000", "ANNUAL"),
    ("epsilon.myshopify.com", UPSELL): Expected("active", "Annual Starter", "10.0000", "240.0000", "ANNUAL"),
    ("zeta.myshopify.com", BUNDLES): Expected("active", "Quarterly", "29.0000", "174.0000", "EVERY_90_DAYS"),
    ("eta.myshopify.com", BUNDLES): Expected("churned", None, "0", "0"),
    ("theta.myshopify.com", REVIEWS): Expected("active", None, "0", "0"),
}

# Overall, USD: MRR 29 + 24.9167 + 10 + 29 = 92.9167, ARR x 12 = 1115.0004; active or trialing:
# alpha/Reviews, gamma, alpha/Upsell, epsilon, zeta, theta = 6; paying 4; ARPU 92.9167 / 4 = 23.2292
EXPECTED_MRR = Decimal("92.9167")
EXPECTED_ARR = Decimal("1115.0004")
EXPECTED_ACTIVE = 6
EXPECTED_ARPU = Decimal("23.2292")


def add_incremental(fake: FakePartnerApi, late_at: datetime) -> None:
    """New data for the incremental sync (all within the last day).

    * beta / Reviews unfrozen: active again, MRR 9.99
    * alpha / Reviews upgraded to Plus 49.00 (Pro cancelled): MRR 49.00, lifetime 260 + 49 = 309.00
    * iota / Upsell new: Annual Growth 299.00: MRR 24.9167, lifetime 299.00
    * a usage sale of alpha / Reviews that Shopify recorded late, ``late_at`` (inside the overlap
      window of the previous sync): lifetime 309.00 + 3.50 = 312.50
    """
    ev, sub = fake.add_event, fake.add_transaction
    ev(REVIEWS, "SUBSCRIPTION_CHARGE_UNFROZEN", "beta.myshopify.com", D(0.5), charge=charge("b1", "Basic", "9.99"))
    plus = charge("a2", "Plus", "49.00")
    ev(REVIEWS, "SUBSCRIPTION_CHARGE_ACTIVATED", "alpha.myshopify.com", D(0.4), charge=plus)
    ev(REVIEWS, "SUBSCRIPTION_CHARGE_CANCELED", "alpha.myshopify.com", D(0.4), charge=charge("a1", "Pro", "29.00"))
    sub("AppSubscriptionSale", REVIEWS, "alpha.myshopify.com", D(0.4), "49.00", charge_id=cid("a2"),
        interval="EVERY_30_DAYS")
    ev(UPSELL, "RELATIONSHIP_INSTALLED", "iota.myshopify.com", D(0.3))
    ev(UPSELL, "SUBSCRIPTION_CHARGE_ACTIVATED", "iota.myshopify.com", D(0.3), charge=charge("i1", "Annual Growth", "299.00"))
    sub("AppSubscriptionSale", UPSELL, "iota.myshopify.com", D(0.3), "299.00", charge_id=cid("i1"), interval="ANNUAL")
    sub("AppUsageSale", REVIEWS, "alpha.myshopify.com", late_at, "3.50", charge_id="gid://shopify/AppUsageRecord/late")


EXPECTED_AFTER_INCREMENTAL = {
    **EXPECTED,
    ("alpha.myshopify.com", REVIEWS): Expected("active", "Plus", "49.0000", "312.5000", "EVERY_30_DAYS"),
    ("beta.myshopify.com", REVIEWS): Expected("active", "Basic", "9.9900", "19.9800", "EVERY_30_DAYS"),
    ("iota.myshopify.com", UPSELL): Expected("active", "Annual Growth", "24.9167", "299.0000", "ANNUAL"),
}
