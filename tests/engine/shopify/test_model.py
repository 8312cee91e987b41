"""The pure merchant model and dashboard, against values computed by hand."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.shopify.model import (
    Lifecycle,
    MerchantHistory,
    Status,
    TimelinePoint,
    advance_baseline,
    dashboard,
    derive_merchant,
    monthly_amount,
    range_bounds,
    range_metrics,
)
from engine.shopify.records import AppEvent, Money, Transaction

D = Decimal
T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
SHOP, APP = "alpha.myshopify.com", "gid://partners/App/1"


def ev(kind, at, charge=None, name=None, amount=None, billing_on=None, test=False):
    return AppEvent(
        id=AppEvent.stable_id(kind, APP, SHOP, at, charge), type=kind, app_gid=APP, shop_domain=SHOP,
        occurred_at=at, charge_id=charge, charge_name=name,
        charge_amount=Money(D(amount), "USD") if amount is not None else None, charge_test=test, billing_on=billing_on,
    )


def sale(tid, at, amount, charge=None, interval="EVERY_30_DAYS", kind="APP_SUBSCRIPTION_SALE", currency="USD"):
    money = Money(D(amount), currency)
    return Transaction(id=tid, type=kind, app_gid=APP, app_name="A", shop_domain=SHOP, created_at=at, gross=money,
                       net=Money(D(amount) * D("0.8"), currency), charge_id=charge,
                       billing_interval=interval if kind == "APP_SUBSCRIPTION_SALE" else None)


def derive(events=(), transactions=(), now=NOW, **kw):
    return derive_merchant(SHOP, APP, events=list(events), transactions=list(transactions), now=now, **kw)


@pytest.mark.parametrize("amount,interval,expected", [
    ("29.00", "EVERY_30_DAYS", "29.0000"),
    ("29.00", None, "29.0000"),              # sales before intervals existed
    ("299.00", "ANNUAL", "24.9167"),         # 299 / 12 = 24.91666... -> half-even at 4 places
    ("240.00", "ANNUAL", "20.0000"),
    ("87.00", "EVERY_90_DAYS", "29.0000"),   # 87 x 30 / 90
    ("100.00", "EVERY_90_DAYS", "33.3333"),
    ("10.00", "EVERY_60_DAYS", "5.0000"),
])
def test_monthly_normalisation(amount, interval, expected):
    result = monthly_amount(D(amount), interval)
    assert result == D(expected) and isinstance(result, Decimal)


def test_unknown_interval_is_not_guessed():
    assert monthly_amount(D("10"), "WEEKLY") is None
    snap = derive([ev("RELATIONSHIP_INSTALLED", T0), ev("SUBSCRIPTION_CHARGE_ACTIVATED", T0, "c1", "Pro", "10")],
                  [sale("t1", T0, "10", "c1", interval="FORTNIGHTLY")])
    assert snap.status is Status.ACTIVE and snap.mrr == 0 and snap.interval_known is False


def test_install_then_paid_annual_plan():
    snap = derive(
        [ev("RELATIONSHIP_INSTALLED", T0), ev("SUBSCRIPTION_CHARGE_ACTIVATED", T0 + timedelta(minutes=5), "c1", "Annual Pro", "240.00")],
        [sale("t1", T0 + timedelta(minutes=6), "240.00", "c1", "ANNUAL")],
    )
    assert (snap.status, snap.plan, snap.mrr, snap.currency) == (Status.ACTIVE, "Annual Pro", D("20.0000"), "USD")
    assert snap.billing_interval == "ANNUAL"
    assert snap.lifetime_gross == D("240.0000")
    assert snap.installed_at == T0
    assert [(p.status, p.mrr) for p in snap.timeline] == [(Status.ACTIVE, 0), (Status.ACTIVE, D("20.0000"))]


def test_trial_then_first_charge():
    activated = T0 + timedelta(hours=1)
    trial_end = activated + timedelta(days=14)
    events = [ev("RELATIONSHIP_INSTALLED", T0),
              ev("SUBSCRIPTION_CHARGE_ACTIVATED", activated, "c1", "Basic", "19.99", billing_on=trial_end)]
    during = derive(events, now=activated + timedelta(days=3))
    assert during.status is Status.TRIALING and during.mrr == 0 and during.trial_ends_at == trial_end
    # The first sale comes at the end of the trial.
    after = derive(events, [sale("t1", trial_end + timedelta(hours=2), "19.99", "c1")], now=trial_end + timedelta(days=1))
    assert after.status is Status.ACTIVE and after.mrr == D("19.9900") and after.trial_ends_at is None
    # installed (free) -> trialing at activation -> paying at billingOn
    assert [(p.at, p.status, p.mrr) for p in after.timeline] == [
        (T0, Status.ACTIVE, 0), (activated, Status.TRIALING, 0), (trial_end, Status.ACTIVE, D("19.99"))]
    # Trial ended by the calendar before the sale was copied: active from billingOn on.
    lapsed = derive(events, now=trial_end + timedelta(hours=1))
    assert lapsed.status is Status.ACTIVE and lapsed.mrr == D("19.9900")
    assert lapsed.timeline[-1].at == trial_end


def test_activation_without_trial_is_active_at_once():
    snap = derive([ev("RELATIONSHIP_INSTALLED", T0),
                   ev("SUBSCRIPTION_CHARGE_ACTIVATED", T0, "c1", "Pro", "50", billing_on=T0 + timedelta(hours=1))])
    assert snap.status is Status.ACTIVE and snap.mrr == D("50.0000")


def test_frozen_and_unfrozen():
    events = [ev("RELATIONSHIP_INSTALLED", T0), ev("SUBSCRIPTION_CHARGE_ACTIVATED", T0, "c1", "Pro", "50"),
              ev("SUBSCRIPTION_CHARGE_FROZEN", T0 + timedelta(days=40), "c1", "Pro", "50")]
    frozen = derive(events)
    assert frozen.status is Status.FROZEN and frozen.mrr == 0 and frozen.plan == "Pro"
    thawed = derive(events + [ev("SUBSCRIPTION_CHARGE_UNFROZEN", T0 + timedelta(days=50), "c1", "Pro", "50")])
    assert thawed.status is Status.ACTIVE and thawed.mrr == D("50.0000")


def test_store_deactivated_is_frozen_until_reactivated():
    events = [ev("RELATIONSHIP_INSTALLED", T0), ev("SUBSCRIPTION_CHARGE_ACTIVATED", T0, "c1", "Pro", "50"),
              ev("RELATIONSHIP_DEACTIVATED", T0 + timedelta(days=3))]
    assert derive(events).status is Status.FROZEN
    assert derive(events + [ev("RELATIONSHIP_REACTIVATED", T0 + timedelta(days=9))]).status is Status.ACTIVE


def test_uninstall_churns_and_cancels_the_plan():
    events = [ev("RELATIONSHIP_INSTALLED", T0), ev("SUBSCRIPTION_CHARGE_ACTIVATED", T0, "c1", "Pro", "50"),
              ev("SUBSCRIPTION_CHARGE_CANCELED", T0 + timedelta(days=20), "c1", "Pro", "50"),
              ev("RELATIONSHIP_UNINSTALLED", T0 + timedelta(days=20))]
    snap = derive(events, [sale("t1", T0, "50", "c1")])
    assert (snap.status, snap.mrr, snap.plan) == (Status.CHURNED, 0, None)
    assert snap.uninstalled_at == T0 + timedelta(days=20) and snap.lifetime_gross == D("50.0000")


def test_cancel_keeps_an_installed_free_merchant_active():
    events = [ev("RELATIONSHIP_INSTALLED", T0), ev("SUBSCRIPTION_CHARGE_ACTIVATED", T0, "c1", "Pro", "50"),
              ev("SUBSCRIPTION_CHARGE_CANCELED", T0 + timedelta(days=20), "c1", "Pro", "50")]
    snap = derive(events)
    assert snap.status is Status.ACTIVE and snap.mrr == 0 and snap.plan is None


def test_declined_charge_does_not_end_the_current_one():
    events = [ev("RELATIONSHIP_INSTALLED", T0), ev("SUBSCRIPTION_CHARGE_ACTIVATED", T0, "c1", "Pro", "50"),
              ev("SUBSCRIPTION_CHARGE_DECLINED", T0 + timedelta(days=2), "c2", "Plus", "90")]
    assert derive(events).mrr == D("50.0000")


def test_plan_change_replaces_the_charge():
    events = [ev("RELATIONSHIP_INSTALLED", T0), ev("SUBSCRIPTION_CHARGE_ACTIVATED", T0, "c1", "Pro", "50"),
              ev("SUBSCRIPTION_CHARGE_ACTIVATED", T0 + timedelta(days=10), "c2", "Plus", "90"),
              ev("SUBSCRIPTION_CHARGE_CANCELED", T0 + timedelta(days=10), "c1", "Pro", "50")]
    snap = derive(events)
    assert (snap.plan, snap.mrr) == ("Plus", D("90.0000"))


def test_test_charges_earn_nothing():
    snap = derive([ev("RELATIONSHIP_INSTALLED", T0), ev("SUBSCRIPTION_CHARGE_ACTIVATED", T0, "c1", "Pro", "50", test=True)])
    assert snap.status is Status.ACTIVE and snap.mrr == 0 and snap.plan is None


def test_lifetime_gross_counts_every_sale_minus_refunds_and_credits():
    txs = [sale("t1", T0, "50", "c1"), sale("t2", T0 + timedelta(days=30), "50", "c1"),
           sale("u1", T0 + timedelta(days=31), "7.25", "u", kind="APP_USAGE_SALE"),
           sale("o1", T0 + timedelta(days=32), "100", "o", kind="APP_ONE_TIME_SALE"),
           sale("a1", T0 + timedelta(days=33), "-20", "c1", kind="APP_SALE_ADJUSTMENT"),
           sale("k1", T0 + timedelta(days=34), "5", "cr", kind="APP_SALE_CREDIT")]
    snap = derive([ev("RELATIONSHIP_INSTALLED", T0), ev("SUBSCRIPTION_CHARGE_ACTIVATED", T0, "c1", "Pro", "50")], txs)
    # 50 + 50 + 7.25 + 100 - 20 - 5
    assert snap.lifetime_gross == D("182.2500")
    assert snap.mrr == D("50.0000")  # usage and one-time sales are not recurring


def test_money_in_several_currencies_is_never_mixed():
    txs = [sale("t1", T0, "50", "c1"), sale("t2", T0 + timedelta(days=1), "40", "x", kind="APP_ONE_TIME_SALE", currency="EUR")]
    snap = derive([ev("RELATIONSHIP_INSTALLED", T0), ev("SUBSCRIPTION_CHARGE_ACTIVATED", T0, "c1", "Pro", "50")], txs)
    assert snap.lifetime_by_currency == {"EUR": D("40.0000"), "USD": D("50.0000")}
    assert snap.lifetime_gross == D("50.0000") and snap.currency == "USD"


def test_merchant_known_only_from_transactions():
    snap = derive([], [sale("t1", T0, "30", "c9", "EVERY_30_DAYS")])
    assert snap.status is Status.ACTIVE and snap.mrr == D("30.0000") and snap.installed_at == T0


def test_same_instant_events_apply_in_lifecycle_order():
    """Install and activation at the same second, listed in reverse: still a paying merchant."""
    events = [ev("SUBSCRIPTION_CHARGE_ACTIVATED", T0, "c1", "Pro", "50"), ev("RELATIONSHIP_INSTALLED", T0)]
    assert derive(events).mrr == D("50.0000")


def test_baseline_reproduces_the_full_history():
    events = [ev("RELATIONSHIP_INSTALLED", T0), ev("SUBSCRIPTION_CHARGE_ACTIVATED", T0, "c1", "Pro", "50"),
              ev("SUBSCRIPTION_CHARGE_FROZEN", T0 + timedelta(days=40), "c1"),
              ev("SUBSCRIPTION_CHARGE_UNFROZEN", T0 + timedelta(days=45), "c1"),
              ev("SUBSCRIPTION_CHARGE_ACTIVATED", T0 + timedelta(days=100), "c2", "Plus", "900")]
    txs = [sale("t1", T0, "50", "c1"), sale("t2", T0 + timedelta(days=101), "900", "c2", "ANNUAL")]
    full = derive(events, txs)
    cutoff = T0 + timedelta(days=60)
    baseline = advance_baseline(SHOP, APP, baseline=None, baseline_until=None, events=events, transactions=txs, cutoff=cutoff)
    assert baseline.installed_at == T0 and baseline.ever_paid and baseline.plan == "Pro"
    assert Lifecycle.from_json(baseline.to_json()) == baseline
    resumed = derive([e for e in events if e.occurred_at > cutoff], txs, baseline=baseline, baseline_until=cutoff)
    for attr in ("status", "plan", "mrr", "currency", "installed_at", "lifetime_gross", "billing_interval"):
        assert getattr(resumed, attr) == getattr(full, attr), attr
    assert resumed.mrr == D("75.0000")  # 900 / 12
    assert resumed.timeline[0].at == cutoff and resumed.timeline[-1] == full.timeline[-1]


def test_timeline_round_trips_through_json():
    point = TimelinePoint(T0, Status.ACTIVE, D("24.9167"), "USD")
    assert TimelinePoint.from_json(point.to_json()) == point


# ---------------------------------------------------------------------------------------------
# Dashboard
# ---------------------------------------------------------------------------------------------

def history(shop, app, *points, paid_before=False, opens=False):
    return MerchantHistory(shop, app, tuple(TimelinePoint(at, Status(s), D(m), c) for at, s, m, c in points),
                           paid_before, opens)


def test_range_bounds():
    now = datetime(2025, 3, 10, 15, 30, tzinfo=timezone.utc)
    assert range_bounds("yesterday", now) == (datetime(2025, 3, 9, tzinfo=timezone.utc), datetime(2025, 3, 10, tzinfo=timezone.utc))
    assert range_bounds("7d", now) == (now - timedelta(days=7), now)
    assert range_bounds("12m", now) == (datetime(2024, 3, 10, 15, 30, tzinfo=timezone.utc), now)
    assert range_bounds("12m", datetime(2024, 2, 29, tzinfo=timezone.utc))[0] == datetime(2023, 2, 28, tzinfo=timezone.utc)
    with pytest.raises(ValueError):
        range_bounds("week", now)


def test_dashboard_by_hand():
    day = timedelta(days=1)
    a1, a2 = "gid://partners/App/1", "gid://partners/App/2"
    histories = [
        # paying 50 since long ago: counted in MRR at both ends, no movement
        history("a.myshopify.com", a1, (NOW - 200 * day, "active", "50", "USD")),
        # new 20 in the last 30 days, expanded to 35 five days ago
        history("b.myshopify.com", a1, (NOW - 20 * day, "active", "20", "USD"), (NOW - 5 * day, "active", "35", "USD")),
        # churned 10 days ago from 25
        history("c.myshopify.com", a2, (NOW - 100 * day, "active", "25", "USD"), (NOW - 10 * day, "churned", "0", "USD")),
        # trialing: active merchant, no MRR
        history("d.myshopify.com", a2, (NOW - 3 * day, "trialing", "0", "USD")),
        # came back after a churn: reactivation, not new
        history("e.myshopify.com", a2, (NOW - 300 * day, "active", "10", "USD"), (NOW - 200 * day, "churned", "0", "USD"),
                (NOW - 2 * day, "active", "10", "USD")),
        # a euro merchant, frozen (no MRR, not active)
        history("f.myshopify.com", a1, (NOW - 50 * day, "active", "40", "EUR"), (NOW - 1 * day, "frozen", "0", "EUR")),
    ]
    m = range_metrics(histories, "30d", NOW)
    usd, eur = m.currencies["USD"], m.currencies["EUR"]
    assert m.active_merchants == 4 and m.trialing_merchants == 1   # a, b, d, e
    assert usd.mrr == D("95") and usd.arr == D("1140")             # 50 + 35 + 10
    assert usd.mrr_start == D("75")                                 # 50 + 25
    assert (usd.new_mrr, usd.expansion_mrr, usd.reactivation_mrr, usd.churned_mrr, usd.contraction_mrr) == \
        (D("20"), D("15"), D("10"), D("25"), D("0"))
    assert usd.paying_merchants == 3 and usd.arpu == D("31.6667")   # 95 / 3
    assert (eur.mrr, eur.mrr_start, eur.churned_mrr) == (D("0"), D("40"), D("40"))
    # MRR at the start plus the movements is MRR at the end, per currency.
    for c in (usd, eur):
        assert c.mrr_start + c.new_mrr + c.reactivation_mrr + c.expansion_mrr - c.contraction_mrr - c.churned_mrr == c.mrr
    # The chart starts at the opening MRR and ends at the closing MRR.
    assert m.series[0][1]["USD"] == D("75") and m.series[-1][1]["USD"] == D("95")

    seven = range_metrics(histories, "7d", NOW).currencies["USD"]
    assert (seven.new_mrr, seven.expansion_mrr, seven.reactivation_mrr, seven.churned_mrr) == (D("0"), D("15"), D("10"), D("0"))

    full = dashboard(histories, NOW)
    assert set(full["overall"]) == {"yesterday", "7d", "30d", "90d", "12m"}
    assert full["apps"][a2]["30d"]["currencies"]["USD"]["mrr"] == "10"
    assert full["apps"][a2]["30d"]["currencies"]["USD"]["churned_mrr"] == "25"
    assert full["apps"][a1]["30d"]["active_merchants"] == 2
    assert full["overall"]["30d"]["currencies"]["USD"]["arpu"] == "31.6667"


def test_yesterday_is_the_previous_calendar_day():
    h = history("x.myshopify.com", APP, (datetime(2025, 6, 1, 9, tzinfo=timezone.utc), "active", "30", "USD"))
    now = datetime(2025, 6, 2, 8, tzinfo=timezone.utc)
    y = range_metrics([h], "yesterday", now).currencies["USD"]
    assert y.new_mrr == D("30") and y.mrr == D("30") and y.mrr_start == 0
    today = datetime(2025, 6, 1, 23, tzinfo=timezone.utc)
    assert range_metrics([h], "yesterday", today).currencies == {}


def test_baseline_opening_point_is_not_a_movement():
    h = history("x.myshopify.com", APP, (NOW - 10 * timedelta(days=1), "active", "30", "USD"), opens=True, paid_before=True)
    metrics = range_metrics([h], "30d", NOW).currencies["USD"]
    assert metrics.new_mrr == 0 and metrics.reactivation_mrr == 0 and metrics.mrr == D("30")


_status = st.sampled_from(["active", "trialing", "frozen", "churned"])
_amount = st.sampled_from(["0", "9.99", "19.5", "24.9167", "100"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 500), _status, _amount, st.sampled_from(["USD", "EUR"])),
                         min_size=1, max_size=6), min_size=1, max_size=8),
       st.sampled_from(["yesterday", "7d", "30d", "90d", "12m"]))
def test_movements_always_reconcile_opening_and_closing_mrr(raw, name):
    histories = []
    for i, points in enumerate(raw):
        pts, seen = [], set()
        for days, status, amount, cur in sorted(points):
            if days in seen:
                continue
            seen.add(days)
            mrr = amount if status == "active" else "0"
            pts.append((NOW - timedelta(days=500 - days), status, mrr, cur))
        histories.append(history(f"s{i}.myshopify.com", APP, *pts))
    result = range_metrics(histories, name, NOW)
    for c in result.currencies.values():
        assert c.mrr_start + c.new_mrr + c.reactivation_mrr + c.expansion_mrr - c.contraction_mrr - c.churned_mrr == c.mrr
        assert min(c.new_mrr, c.reactivation_mrr, c.expansion_mrr, c.contraction_mrr, c.churned_mrr) >= 0
