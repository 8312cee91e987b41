"""The billing state machine: right under out-of-order delivery, by hand and for every order."""

from datetime import datetime, timezone

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from admin_api.billing.plans import load_plans
from admin_api.billing.state import BillingState, apply_event
from tests.fakes.stripe_api import checkout_completed, event, invoice, subscription

PLANS = load_plans("configs/plans.toml", "team=price_1Team,business=price_1Biz")
T0 = 1_767_000_000
END1, END2 = T0 + 30 * 86400, T0 + 60 * 86400


def ev(type_, obj, created, eid=None):
    return orjson.loads(event(type_, obj, created=created, event_id=eid))


def sub(status, price="price_1Team", end=END1, sid="sub_A", **kw):
    return subscription(sid, "cus_1", price, status, period_end=end, **kw)


def run(events, state=None):
    state = state or BillingState(stripe_customer_id="cus_1")
    for e in events:
        state = apply_event(state, e, PLANS).state
    return state


def test_checkout_then_subscription_active():
    s = run([ev("checkout.session.completed", checkout_completed("cs_1", "cus_1", "sub_A", "org", "team"), T0),
             ev("customer.subscription.created", sub("active"), T0)])
    assert (s.plan, s.status, s.stripe_subscription_id) == ("team", "active", "sub_A")
    assert s.current_period_end == datetime.fromtimestamp(END1, timezone.utc)
    assert s.banner() is None


def test_updated_before_created_ends_in_the_updated_state():
    created = ev("customer.subscription.created", sub("incomplete"), T0)
    updated = ev("customer.subscription.updated", sub("active", price="price_1Biz"), T0 + 5)
    s = run([updated, created])
    assert (s.plan, s.status) == ("business", "active")
    assert s.state_event_created == T0 + 5
    assert run([created, updated]) == s


def test_same_second_events_order_by_rank():
    created = ev("customer.subscription.created", sub("incomplete"), T0)
    updated = ev("customer.subscription.updated", sub("active"), T0)
    assert run([updated, created]).status == "active"
    assert run([created, updated]).status == "active"


def test_payment_failure_and_recovery():
    s = run([ev("customer.subscription.created", sub("active"), T0),
             ev("invoice.payment_failed", invoice("cus_1", "sub_A", "open"), T0 + 100)])
    assert (s.status, s.plan, s.banner()) == ("past_due", "team", "payment_failed")
    assert PLANS.effective(s.plan, s.status).name == "team"     # keeps its plan and chats on
    s = run([ev("invoice.paid", invoice("cus_1", "sub_A", "paid"), T0 + 200)], s)
    assert (s.status, s.banner()) == ("active", None)
    # A late copy of the failure (older) changes nothing.
    assert run([ev("invoice.payment_failed", invoice("cus_1", "sub_A", "open"), T0 + 150)], s) == s


def test_deleted_is_final_for_that_subscription():
    deleted = ev("customer.subscription.deleted", sub("canceled"), T0 + 50)
    s = run([ev("customer.subscription.created", sub("active"), T0), deleted])
    assert (s.status, s.plan) == ("canceled", "free")
    # Stragglers about the deleted subscription, older or newer, never bring it back.
    for late in (ev("customer.subscription.updated", sub("active"), T0 + 10),
                 ev("customer.subscription.updated", sub("active"), T0 + 99),
                 ev("invoice.paid", invoice("cus_1", "sub_A", "paid"), T0 + 99)):
        assert run([late], s) == s
    # A new subscription afterwards is adopted.
    s2 = run([ev("customer.subscription.created", sub("active", sid="sub_B", price="price_1Biz"), T0 + 500)], s)
    assert (s2.stripe_subscription_id, s2.status, s2.plan) == ("sub_B", "active", "business")


def test_invoice_of_another_subscription_is_ignored():
    s = run([ev("customer.subscription.created", sub("active"), T0)])
    assert run([ev("invoice.payment_failed", invoice("cus_1", "sub_OTHER", "open"), T0 + 9)], s) == s


def test_unknown_price_keeps_the_plan_from_metadata():
    s = run([ev("customer.subscription.created", sub("active", price="price_unknown", metadata={"plan": "business"}), T0)])
    assert s.plan == "business"


def test_unhandled_event_changes_nothing():
    s = BillingState(stripe_customer_id="cus_1")
    decision = apply_event(s, ev("customer.updated", {"id": "cus_1", "object": "customer"}, T0), PLANS)
    assert not decision.changed and decision.state == s


LIFECYCLE = [
    ("checkout.session.completed", checkout_completed("cs_1", "cus_1", "sub_A", "org", "team"), T0),
    ("customer.subscription.created", sub("incomplete"), T0),
    ("invoice.paid", invoice("cus_1", "sub_A", "paid"), T0),
    ("customer.subscription.updated", sub("active"), T0),
    ("invoice.payment_failed", invoice("cus_1", "sub_A", "open"), T0 + 86400),
    ("customer.subscription.updated", sub("past_due"), T0 + 86400),
    ("invoice.paid", invoice("cus_1", "sub_A", "paid"), T0 + 2 * 86400),
    ("customer.subscription.updated", sub("active", price="price_1Biz", end=END2), T0 + 2 * 86400),
]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_every_delivery_order_ends_in_the_in_order_state(data):
    events = [ev(t, o, c, eid=f"evt_{i}") for i, (t, o, c) in enumerate(LIFECYCLE)]
    if data.draw(st.booleans(), label="with_deletion"):
        events.append(ev("customer.subscription.deleted", sub("canceled", price="price_1Biz", end=END2),
                         T0 + 3 * 86400, eid="evt_del"))
    delivered = data.draw(st.sets(st.sampled_from(range(len(events))), min_size=1), label="delivered")
    order = data.draw(st.permutations(sorted(delivered)), label="order")
    in_order = run([events[i] for i in sorted(delivered)])
    assert run([events[i] for i in order]) == in_order
    if len(events) - 1 in delivered and len(events) > len(LIFECYCLE):
        assert (in_order.status, in_order.plan) == ("canceled", "free")


def test_full_life_in_order_and_reversed():
    events = [ev(t, o, c, eid=f"evt_{i}") for i, (t, o, c) in enumerate(LIFECYCLE)]
    final = run(events)
    assert (final.status, final.plan) == ("active", "business")
    assert final.current_period_end == datetime.fromtimestamp(END2, timezone.utc)
    assert run(list(reversed(events))) == final
