"""The billing account's state machine (pure), correct under out-of-order delivery.

Stripe does not deliver events in order, so no decision depends on arrival order:

* every handled event is tagged (created, rank); ranks order what Stripe emits within one
  second: checkout completion < subscription created < invoice events < subscription
  updated < subscription deleted;
* the **status** is the one proposed by the newest event that proposes one (subscription events:
  the object's status, ``canceled`` when deleted; ``invoice.payment_failed``: ``past_due``;
  a paid non-zero ``invoice.paid``: ``active``; a paid checkout: ``active``), remembered with
  that event's (created, rank) in ``state_event_created`` / ``state_event_rank``;
* the **subscription object's own fields** (plan from its price, period end, cancel flag) come
  from the newest subscription event, remembered in ``object_event_*``; a checkout completion
  only fills the subscription id and plan while no subscription event has been seen;
* a deleted subscription never comes back: later events about it change nothing.

So any delivery order of the same events ends in the same state as in-order delivery (a
property test checks every permutation of a subscription's life).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone

from admin_api.billing.plans import FREE, Plans

RANKS = {
    "checkout.session.completed": 1,
    "customer.subscription.created": 2,
    "invoice.paid": 3,
    "invoice.payment_failed": 3,
    "customer.subscription.updated": 4,
    "customer.subscription.deleted": 5,
}
HANDLED = frozenset(RANKS)
_ENDED = frozenset({"canceled", "incomplete_expired"})


@dataclass(frozen=True)
class BillingState:
    plan: str = FREE
    status: str = "none"                      # Stripe subscription status, or none
    stripe_customer_id: str | None = None
    stripe_subscription_id: str | None = None
    current_period_end: datetime | None = None
    cancel_at_period_end: bool = False
    state_event_created: int = 0
    state_event_rank: int = 0
    object_event_created: int = 0
    object_event_rank: int = 0

    def banner(self) -> str | None:
        """What the inbox shows above everything: chat goes on, the owner is told to pay."""
        if self.status in ("past_due", "unpaid"):
            return "payment_failed"
        if self.status == "incomplete":
            return "payment_incomplete"
        return None


@dataclass(frozen=True)
class Decision:
    state: BillingState
    changed: bool
    reason: str


def customer_of(event: dict) -> str | None:
    obj = event.get("data", {}).get("object", {})
    customer = obj.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    return customer if isinstance(customer, str) else None


def _subscription_id_of_invoice(invoice: dict) -> str | None:
    sub = invoice.get("subscription")  # API versions before 2025-03-31
    if sub is None:
        parent = invoice.get("parent") or {}
        sub = (parent.get("subscription_details") or {}).get("subscription")
    if isinstance(sub, dict):
        sub = sub.get("id")
    return sub if isinstance(sub, str) else None


def _period_end(subscription: dict) -> datetime | None:
    value = subscription.get("current_period_end")  # before 2025-03-31 on the subscription, since on its items
    if value is None:
        items = (subscription.get("items") or {}).get("data") or []
        ends = [i.get("current_period_end") for i in items if isinstance(i.get("current_period_end"), int)]
        value = max(ends) if ends else None
    return datetime.fromtimestamp(value, timezone.utc) if isinstance(value, int) else None


def _plan_of(subscription: dict, plans: Plans, fallback: str) -> str:
    for item in (subscription.get("items") or {}).get("data") or []:
        price = item.get("price") or {}
        plan = plans.by_price(price.get("id") if isinstance(price, dict) else price)
        if plan is not None:
            return plan.name
    named = (subscription.get("metadata") or {}).get("plan")
    if isinstance(named, str) and named in plans:
        return named
    return fallback


def _status_proposal(kind: str, obj: dict) -> str | None:
    if kind == "customer.subscription.deleted":
        return "canceled"
    if kind.startswith("customer.subscription."):
        status = obj.get("status")
        return status if isinstance(status, str) and status else None
    if kind == "invoice.payment_failed":
        return "past_due"
    if kind == "invoice.paid":
        # A paid $0 invoice (the first one of a trial) says nothing about the status.
        return "active" if (obj.get("amount_paid") or 0) > 0 else None
    if kind == "checkout.session.completed":
        return "active" if obj.get("payment_status") in ("paid", "no_payment_required") else "incomplete"
    return None


def _subscription_of(kind: str, obj: dict) -> str | None:
    if kind.startswith("customer.subscription."):
        sub = obj.get("id")
    elif kind.startswith("invoice."):
        return _subscription_id_of_invoice(obj)
    else:
        sub = obj.get("subscription")
    if isinstance(sub, dict):
        sub = sub.get("id")
    return sub if isinstance(sub, str) else None


def apply_event(state: BillingState, event: dict, plans: Plans) -> Decision:
    kind = event["type"]
    if kind not in HANDLED:
        return Decision(state, False, "not handled")
    obj = event["data"]["object"]
    if kind == "checkout.session.completed" and obj.get("mode") != "subscription":
        return Decision(state, False, "not a subscription checkout")
    sub_id = _subscription_of(kind, obj)
    if sub_id is None:
        return Decision(state, False, "no subscription")
    stamp = (int(event["created"]), RANKS[kind])
    current = state.stripe_subscription_id
    if current is not None and sub_id != current:
        # Another subscription: adopted only when the current one has ended (or by a newer
        # subscription event); an invoice or a deletion of another subscription changes nothing.
        if kind.startswith("invoice.") or kind == "customer.subscription.deleted":
            return Decision(state, False, "event of another subscription")
        if state.status not in _ENDED and stamp < (state.object_event_created, state.object_event_rank):
            return Decision(state, False, "another subscription holds the account")
        # The previous subscription's stamps do not order the new one's events.
        state = replace(state, stripe_subscription_id=sub_id, status="none", plan=FREE, current_period_end=None,
                        cancel_at_period_end=False, state_event_created=0, state_event_rank=0,
                        object_event_created=0, object_event_rank=0)
    elif current is not None and state.status == "canceled" and kind != "customer.subscription.deleted":
        return Decision(state, False, "this subscription was deleted")
    elif current is not None and state.status == "canceled":
        return Decision(state, False, "already deleted")

    new = replace(state, stripe_subscription_id=sub_id,
                  stripe_customer_id=state.stripe_customer_id or customer_of(event))
    if kind.startswith("customer.subscription."):
        if stamp >= (state.object_event_created, state.object_event_rank):
            new = replace(new, plan=_plan_of(obj, plans, new.plan), current_period_end=_period_end(obj),
                          cancel_at_period_end=bool(obj.get("cancel_at_period_end")),
                          object_event_created=stamp[0], object_event_rank=stamp[1])
    elif kind == "checkout.session.completed" and state.object_event_created == 0:
        plan = (obj.get("metadata") or {}).get("plan")
        if isinstance(plan, str) and plan in plans:
            new = replace(new, plan=plan)
    proposal = _status_proposal(kind, obj)
    if proposal is not None and stamp >= (state.state_event_created, state.state_event_rank):
        new = replace(new, status=proposal, state_event_created=stamp[0], state_event_rank=stamp[1])
    if new.status == "canceled":
        new = replace(new, plan=FREE)
    return Decision(new, new != state, kind if new != state else "older than the current state")
