"""The merchant model and the revenue dashboard (pure: records in, decisions out).

One merchant is one (shop domain, app). Its state is a fold of its lifecycle events and its
subscription sales in time order (:func:`derive_merchant`); the fold also yields a timeline
of (time, status, MRR) changes from which the dashboard computes MRR, new and churned MRR
for any range (:func:`dashboard`). Every amount is a ``Decimal``; docs/revenue.md states each
rule with its reason.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from enum import Enum

from engine.shopify.records import SUBSCRIPTION_SALE, AppEvent, Money, Transaction, format_time, parse_time

ZERO = Decimal(0)
MONEY_PLACES = Decimal("0.0001")         # numeric(20, 4) in PostgreSQL
DEFAULT_CURRENCY = "USD"
TRIAL_MIN = timedelta(hours=12)           # billingOn this far after activation means a free trial
_EVERY_N_DAYS = re.compile(r"^EVERY_([1-9][0-9]{0,3})_DAYS$")


class Status(str, Enum):
    TRIALING = "trialing"
    ACTIVE = "active"
    FROZEN = "frozen"
    CHURNED = "churned"


COUNTED_ACTIVE = frozenset({Status.ACTIVE, Status.TRIALING})


def quantize(value: Decimal) -> Decimal:
    return value.quantize(MONEY_PLACES, rounding=ROUND_HALF_EVEN)


def monthly_amount(amount: Decimal, interval: str | None) -> Decimal | None:
    """Normalise one billing period's price to 30 days.

    ``EVERY_30_DAYS`` (and no interval, as on old sales) -> amount; ``ANNUAL`` -> amount / 12;
    ``EVERY_<N>_DAYS`` -> amount x 30 / N (so 90 days -> amount / 3). Anything else -> None:
    the amount is not counted rather than guessed.
    """
    if interval is None or interval == "EVERY_30_DAYS":
        return quantize(amount)
    if interval == "ANNUAL":
        return quantize(amount / 12)
    match = _EVERY_N_DAYS.match(interval)
    if match:
        return quantize(amount * 30 / int(match.group(1)))
    return None


# ---------------------------------------------------------------------------------------------
# Lifecycle fold
# ---------------------------------------------------------------------------------------------

# Same-instant events are applied in this order: an install before the charge it enables, the
# uninstall after the cancellation that comes with it.
_EVENT_ORDER = {
    "RELATIONSHIP_INSTALLED": 0,
    "RELATIONSHIP_REACTIVATED": 1,
    "SUBSCRIPTION_CHARGE_ACCEPTED": 2,
    "SUBSCRIPTION_CHARGE_ACTIVATED": 3,
    "SUBSCRIPTION_CHARGE_UNFROZEN": 4,
    "SUBSCRIPTION_CHARGE_FROZEN": 5,
    "SUBSCRIPTION_CHARGE_CANCELED": 6,
    "SUBSCRIPTION_CHARGE_DECLINED": 6,
    "SUBSCRIPTION_CHARGE_EXPIRED": 6,
    "RELATIONSHIP_DEACTIVATED": 7,
    "RELATIONSHIP_UNINSTALLED": 8,
}
_SALE_ORDER = 3.5  # a subscription sale at the same instant as its activation comes right after it
_ENDS_CHARGE = frozenset({"SUBSCRIPTION_CHARGE_CANCELED", "SUBSCRIPTION_CHARGE_DECLINED", "SUBSCRIPTION_CHARGE_EXPIRED"})


@dataclass(frozen=True)
class Lifecycle:
    """Where one merchant stands after the items folded so far (serialisable as a baseline)."""

    installed: bool = False
    installed_at: datetime | None = None
    uninstalled_at: datetime | None = None
    deactivated: bool = False          # RELATIONSHIP_DEACTIVATED: the store is closed or paused
    charge_frozen: bool = False        # SUBSCRIPTION_CHARGE_FROZEN
    charge_id: str | None = None       # the active (non-test) subscription
    plan: str | None = None
    price: Money | None = None         # one billing period of that subscription
    trial_ends_at: datetime | None = None
    events_seen: bool = False          # once events exist, transactions no longer imply an install
    ever_paid: bool = False            # had MRR > 0 at some point (new vs reactivation)

    def to_json(self) -> dict:
        return {
            "installed": self.installed,
            "installed_at": _t(self.installed_at),
            "uninstalled_at": _t(self.uninstalled_at),
            "deactivated": self.deactivated,
            "charge_frozen": self.charge_frozen,
            "charge_id": self.charge_id,
            "plan": self.plan,
            "price": self.price.to_json() if self.price else None,
            "trial_ends_at": _t(self.trial_ends_at),
            "events_seen": self.events_seen,
            "ever_paid": self.ever_paid,
        }

    @classmethod
    def from_json(cls, value: Mapping) -> "Lifecycle":
        return cls(
            installed=bool(value["installed"]),
            installed_at=_parse_t(value.get("installed_at")),
            uninstalled_at=_parse_t(value.get("uninstalled_at")),
            deactivated=bool(value.get("deactivated")),
            charge_frozen=bool(value.get("charge_frozen")),
            charge_id=value.get("charge_id"),
            plan=value.get("plan"),
            price=Money.from_json(value.get("price")),
            trial_ends_at=_parse_t(value.get("trial_ends_at")),
            events_seen=bool(value.get("events_seen")),
            ever_paid=bool(value.get("ever_paid")),
        )

    def status_at(self, when: datetime) -> Status:
        if not self.installed:
            return Status.CHURNED
        if self.deactivated or self.charge_frozen:
            return Status.FROZEN
        if self.charge_id is not None and self.trial_ends_at is not None and when < self.trial_ends_at:
            return Status.TRIALING
        return Status.ACTIVE


def _t(value: datetime | None) -> str | None:
    return format_time(value) if value else None


def _parse_t(value: str | None) -> datetime | None:
    return parse_time(value, "baseline") if value else None


def _apply_event(state: Lifecycle, event: AppEvent) -> Lifecycle:
    t, kind = event.occurred_at, event.type
    state = replace(state, events_seen=True)
    if kind == "RELATIONSHIP_INSTALLED":
        return replace(state, installed=True, installed_at=t, uninstalled_at=None, deactivated=False,
                       charge_frozen=False, charge_id=None, plan=None, price=None, trial_ends_at=None)
    if kind == "RELATIONSHIP_UNINSTALLED":
        # Shopify cancels an app's subscription when the app is uninstalled.
        return replace(state, installed=False, uninstalled_at=t, charge_id=None, plan=None, price=None,
                       trial_ends_at=None, charge_frozen=False, deactivated=False)
    if kind == "RELATIONSHIP_DEACTIVATED":
        return replace(state, deactivated=True)
    if kind == "RELATIONSHIP_REACTIVATED":
        return replace(state, deactivated=False, installed=True, installed_at=state.installed_at or t)
    if kind == "SUBSCRIPTION_CHARGE_ACTIVATED":
        if event.charge_test or event.charge_id is None:
            return state  # development-store test charges earn nothing
        trial_end = None
        if event.billing_on is not None and event.billing_on - t >= TRIAL_MIN:
            trial_end = event.billing_on
        installed_at = state.installed_at if state.installed else t
        return replace(state, installed=True, installed_at=installed_at, uninstalled_at=None,
                       charge_id=event.charge_id, plan=event.charge_name, price=event.charge_amount,
                       trial_ends_at=trial_end, charge_frozen=False)
    if kind in _ENDS_CHARGE:
        if event.charge_id is not None and event.charge_id == state.charge_id:
            return replace(state, charge_id=None, plan=None, price=None, trial_ends_at=None, charge_frozen=False)
        return state
    if kind == "SUBSCRIPTION_CHARGE_FROZEN":
        if event.charge_id == state.charge_id and state.charge_id is not None:
            return replace(state, charge_frozen=True)
        return state
    if kind == "SUBSCRIPTION_CHARGE_UNFROZEN":
        if event.charge_id == state.charge_id:
            return replace(state, charge_frozen=False)
        return state
    return state  # accepted charges, one-time and usage charges, credits, capped amounts: history only


def _apply_sale(state: Lifecycle, sale: Transaction) -> Lifecycle:
    t = sale.created_at
    if sale.type != SUBSCRIPTION_SALE:
        if not state.events_seen and not state.installed:
            return replace(state, installed=True, installed_at=t)
        return state
    if state.charge_id is not None and sale.charge_id == state.charge_id:
        if state.trial_ends_at is not None and t < state.trial_ends_at:
            return replace(state, trial_ends_at=t)  # paid before billingOn: the trial is over
        return state
    if not state.events_seen:
        # Known only from transactions (no events copied): the sale itself is the subscription.
        return replace(state, installed=True, installed_at=state.installed_at or t, charge_id=sale.charge_id or sale.id,
                       price=sale.gross or sale.net)
    return state


@dataclass(frozen=True)
class TimelinePoint:
    at: datetime
    status: Status
    mrr: Decimal
    currency: str

    def to_json(self) -> list:
        return [format_time(self.at), self.status.value, str(self.mrr), self.currency]

    @classmethod
    def from_json(cls, value: Sequence) -> "TimelinePoint":
        return cls(parse_time(value[0], "timeline"), Status(value[1]), Decimal(value[2]), value[3])


@dataclass(frozen=True)
class MerchantSnapshot:
    shop_domain: str
    app_gid: str
    status: Status
    plan: str | None
    mrr: Decimal
    currency: str
    billing_interval: str | None
    lifetime_gross: Decimal                      # in `currency`
    lifetime_by_currency: dict[str, Decimal]
    installed_at: datetime | None
    uninstalled_at: datetime | None
    trial_ends_at: datetime | None
    charge_id: str | None
    timeline: tuple[TimelinePoint, ...]
    state: Lifecycle
    interval_known: bool = True                  # False: a billing interval we cannot normalise


def _intervals(transactions: Iterable[Transaction]) -> dict[str, str | None]:
    """charge id -> billing interval of its latest subscription sale."""
    latest: dict[str, Transaction] = {}
    for sale in transactions:
        if sale.type == SUBSCRIPTION_SALE and sale.charge_id:
            current = latest.get(sale.charge_id)
            if current is None or sale.created_at >= current.created_at:
                latest[sale.charge_id] = sale
    return {charge: sale.billing_interval for charge, sale in latest.items()}


def lifetime_by_currency(transactions: Iterable[Transaction]) -> dict[str, Decimal]:
    """Gross paid by the merchant over all time: sales minus adjustments (refunds) and credits."""
    totals: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for tx in transactions:
        money = tx.revenue
        if money is not None:
            totals[money.currency] += money.amount
    return {currency: quantize(amount) for currency, amount in sorted(totals.items())}


def _sorted_items(events: Iterable[AppEvent], sales: Iterable[Transaction], after: datetime | None):
    items = []
    for event in events:
        if after is None or event.occurred_at > after:
            items.append((event.occurred_at, _EVENT_ORDER.get(event.type, 5), event.id, event))
    for sale in sales:
        if after is None or sale.created_at > after:
            items.append((sale.created_at, _SALE_ORDER, sale.id, sale))
    items.sort(key=lambda item: item[:3])
    return items


def derive_merchant(
    shop_domain: str,
    app_gid: str,
    *,
    events: Sequence[AppEvent],
    transactions: Sequence[Transaction],
    now: datetime,
    baseline: Lifecycle | None = None,
    baseline_until: datetime | None = None,
) -> MerchantSnapshot:
    """The merchant as of ``now``.

    ``transactions`` are all of the merchant's transactions (they are never pruned);
    ``events`` those after ``baseline_until`` (older ones were folded into ``baseline``).
    """
    intervals = _intervals(transactions)
    lifetime = lifetime_by_currency(transactions)
    last_tx_currency = max(transactions, key=lambda tx: tx.created_at).revenue if transactions else None

    def evaluate(state: Lifecycle, when: datetime) -> tuple[Status, Decimal, str, bool]:
        status = state.status_at(when)
        currency = state.price.currency if state.price else (last_tx_currency.currency if last_tx_currency else DEFAULT_CURRENCY)
        if status is not Status.ACTIVE or state.price is None or state.charge_id is None:
            return status, ZERO, currency, True
        normalised = monthly_amount(state.price.amount, intervals.get(state.charge_id))
        if normalised is None:
            return status, ZERO, currency, False
        return status, normalised, currency, True

    state = baseline or Lifecycle()
    timeline: list[TimelinePoint] = []

    def emit(at: datetime) -> None:
        nonlocal state
        status, mrr, currency, _known = evaluate(state, at)
        if timeline and (timeline[-1].status, timeline[-1].mrr, timeline[-1].currency) == (status, mrr, currency):
            return
        timeline.append(TimelinePoint(at, status, mrr, currency))
        if mrr > 0 and not state.ever_paid:
            state = replace(state, ever_paid=True)

    if baseline is not None and baseline_until is not None and (baseline.installed or baseline.uninstalled_at):
        emit(baseline_until)
    for when, _order, _id, item in _sorted_items(events, transactions, baseline_until):
        if timeline and state.trial_ends_at is not None and state.trial_ends_at <= when \
                and timeline[-1].status is Status.TRIALING:
            emit(state.trial_ends_at)
        state = _apply_event(state, item) if isinstance(item, AppEvent) else _apply_sale(state, item)
        emit(when)
    if state.trial_ends_at is not None and state.trial_ends_at <= now and timeline \
            and timeline[-1].status is Status.TRIALING:
        emit(state.trial_ends_at)

    status, mrr, currency, known = evaluate(state, now)
    return MerchantSnapshot(
        shop_domain=shop_domain,
        app_gid=app_gid,
        status=status,
        plan=state.plan,
        mrr=mrr,
        currency=currency,
        billing_interval=intervals.get(state.charge_id) if state.charge_id else None,
        lifetime_gross=lifetime.get(currency, ZERO),
        lifetime_by_currency=lifetime,
        installed_at=state.installed_at,
        uninstalled_at=state.uninstalled_at,
        trial_ends_at=state.trial_ends_at if status is Status.TRIALING else None,
        charge_id=state.charge_id,
        timeline=tuple(timeline),
        state=state,
        interval_known=known,
    )


def advance_baseline(
    shop_domain: str,
    app_gid: str,
    *,
    baseline: Lifecycle | None,
    baseline_until: datetime | None,
    events: Sequence[AppEvent],
    transactions: Sequence[Transaction],
    cutoff: datetime,
) -> Lifecycle:
    """The lifecycle as of ``cutoff``: events up to it can then be deleted (retention)."""
    snapshot = derive_merchant(
        shop_domain, app_gid,
        events=[e for e in events if e.occurred_at <= cutoff],
        transactions=[t for t in transactions if t.created_at <= cutoff],
        now=cutoff, baseline=baseline, baseline_until=baseline_until,
    )
    return snapshot.state


# ---------------------------------------------------------------------------------------------
# Dashboard
# ---------------------------------------------------------------------------------------------

RANGES = ("yesterday", "7d", "30d", "90d", "12m")


def range_bounds(name: str, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of a named range. ``yesterday`` is the previous UTC calendar day; the others
    end now: 7, 30 and 90 days of 24 hours, ``12m`` the same instant twelve months earlier."""
    now = now.astimezone(timezone.utc)
    if name == "yesterday":
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight - timedelta(days=1), midnight
    if name in ("7d", "30d", "90d"):
        return now - timedelta(days=int(name[:-1])), now
    if name == "12m":
        try:
            return now.replace(year=now.year - 1), now
        except ValueError:  # 29 February
            return now.replace(year=now.year - 1, day=28), now
    raise ValueError(f"unknown range {name!r}; expected one of {', '.join(RANGES)}")


@dataclass(frozen=True)
class MerchantHistory:
    """What the dashboard needs of one merchant: its timeline and whether it paid before it."""

    shop_domain: str
    app_gid: str
    timeline: tuple[TimelinePoint, ...]
    paid_before_timeline: bool = False   # the baseline had paid
    opens_with_baseline: bool = False    # the first point is the folded past, not a change

    def at(self, when: datetime) -> TimelinePoint | None:
        """The point in force at ``when`` (inclusive), or None before the merchant appeared."""
        index = bisect_right(self.timeline, when, key=lambda point: point.at)
        return self.timeline[index - 1] if index else None


@dataclass
class CurrencyMetrics:
    mrr: Decimal = ZERO
    mrr_start: Decimal = ZERO
    new_mrr: Decimal = ZERO
    reactivation_mrr: Decimal = ZERO
    expansion_mrr: Decimal = ZERO
    contraction_mrr: Decimal = ZERO
    churned_mrr: Decimal = ZERO
    paying_merchants: int = 0

    @property
    def arr(self) -> Decimal:
        return self.mrr * 12

    @property
    def arpu(self) -> Decimal:
        return quantize(self.mrr / self.paying_merchants) if self.paying_merchants else ZERO

    def to_json(self) -> dict:
        return {
            "mrr": str(self.mrr), "arr": str(self.arr), "mrr_start": str(self.mrr_start),
            "new_mrr": str(self.new_mrr), "reactivation_mrr": str(self.reactivation_mrr),
            "expansion_mrr": str(self.expansion_mrr), "contraction_mrr": str(self.contraction_mrr),
            "churned_mrr": str(self.churned_mrr), "paying_merchants": self.paying_merchants,
            "arpu": str(self.arpu),
        }


@dataclass
class RangeMetrics:
    range: str
    start: datetime
    end: datetime
    active_merchants: int = 0          # active or trialing at the end of the range
    trialing_merchants: int = 0
    currencies: dict[str, CurrencyMetrics] = field(default_factory=dict)
    series: list[tuple[datetime, dict[str, Decimal]]] = field(default_factory=list)

    def currency(self, code: str) -> CurrencyMetrics:
        return self.currencies.setdefault(code, CurrencyMetrics())

    def to_json(self) -> dict:
        return {
            "range": self.range, "start": format_time(self.start), "end": format_time(self.end),
            "active_merchants": self.active_merchants, "trialing_merchants": self.trialing_merchants,
            "currencies": {code: m.to_json() for code, m in sorted(self.currencies.items())},
            "series": [{"at": format_time(at), "mrr": {c: str(v) for c, v in sorted(values.items())}}
                       for at, values in self.series],
        }


def _movements(history: MerchantHistory, start: datetime, end: datetime):
    """(kind, currency, amount) of every MRR change in [start, end)."""
    ever_paid = history.paid_before_timeline
    previous: TimelinePoint | None = None
    for index, point in enumerate(history.timeline):
        if point.at >= end:
            break
        if index == 0 and history.opens_with_baseline:
            previous = point
            ever_paid = ever_paid or point.mrr > 0
            continue
        before_mrr = previous.mrr if previous else ZERO
        before_currency = previous.currency if previous else point.currency
        if point.at >= start:
            if before_mrr > 0 and point.mrr > 0 and before_currency != point.currency:
                yield "churned_mrr", before_currency, before_mrr
                yield "reactivation_mrr", point.currency, point.mrr
            elif before_mrr == 0 and point.mrr > 0:
                yield ("reactivation_mrr" if ever_paid else "new_mrr"), point.currency, point.mrr
            elif before_mrr > 0 and point.mrr == 0:
                yield "churned_mrr", before_currency, before_mrr
            elif point.mrr > before_mrr:
                yield "expansion_mrr", point.currency, point.mrr - before_mrr
            elif point.mrr < before_mrr:
                yield "contraction_mrr", point.currency, before_mrr - point.mrr
        if point.mrr > 0:
            ever_paid = True
        previous = point


def _series_points(start: datetime, end: datetime) -> list[datetime]:
    """Daily points from start to end (both included), at most 400."""
    points, step = [], timedelta(days=1)
    if end - start <= timedelta(days=2):
        step = timedelta(hours=1)
    at = start
    while at < end and len(points) < 400:
        points.append(at)
        at += step
    points.append(end)
    return points


def range_metrics(histories: Iterable[MerchantHistory], name: str, now: datetime) -> RangeMetrics:
    start, end = range_bounds(name, now)
    # The state in force at the end of [start, end) is the one at the last instant before `end`.
    just_before_end = end - timedelta(microseconds=1)
    just_before_start = start - timedelta(microseconds=1)
    result = RangeMetrics(name, start, end)
    points = _series_points(start, just_before_end)
    series: list[dict[str, Decimal]] = [defaultdict(lambda: ZERO) for _ in points]
    for history in histories:
        closing = history.at(just_before_end)
        if closing is not None:
            if closing.status in COUNTED_ACTIVE:
                result.active_merchants += 1
            if closing.status is Status.TRIALING:
                result.trialing_merchants += 1
            if closing.mrr > 0:
                metrics = result.currency(closing.currency)
                metrics.mrr += closing.mrr
                metrics.paying_merchants += 1
        opening = history.at(just_before_start)
        if opening is not None and opening.mrr > 0:
            result.currency(opening.currency).mrr_start += opening.mrr
        for kind, currency, amount in _movements(history, start, end):
            metrics = result.currency(currency)
            setattr(metrics, kind, getattr(metrics, kind) + amount)
        for index, at in enumerate(points):
            point = history.at(at)
            if point is not None and point.mrr > 0:
                series[index][point.currency] += point.mrr
    result.series = [(at, dict(values)) for at, values in zip(points, series)]
    return result


def dashboard(histories: Sequence[MerchantHistory], now: datetime, ranges: Sequence[str] = RANGES) -> dict:
    """Metrics per range, overall and per app: {"overall": {range: ...}, "apps": {gid: {range: ...}}}."""
    by_app: dict[str, list[MerchantHistory]] = defaultdict(list)
    for history in histories:
        by_app[history.app_gid].append(history)
    return {
        "generated_at": format_time(now),
        "overall": {name: range_metrics(histories, name, now).to_json() for name in ranges},
        "apps": {
            app: {name: range_metrics(items, name, now).to_json() for name in ranges}
            for app, items in sorted(by_app.items())
        },
    }
