"""Plans from ``configs/plans.toml`` (limits) and ``billing.price_ids`` (Stripe prices).

Validated once at start-up: a plan has a positive whole number of seats and of apps, and
nothing else is limited (a ``conversations`` or ``messages`` key is refused by name).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from convot.config import REPO_ROOT, ConfigError

FREE = "free"
_KEYS = {"title", "seats", "apps", "monthly_price"}
_FORBIDDEN = {"conversations", "messages", "conversation_limit", "message_limit"}

# Stripe subscription statuses under which the paid plan's limits apply.  A past-due or unpaid
# organisation keeps its plan (and keeps chatting) and sees a banner.
PLAN_HOLDING_STATUSES = frozenset({"active", "trialing", "past_due", "unpaid"})


@dataclass(frozen=True)
class Plan:
    name: str
    title: str
    seats: int
    apps: int
    monthly_price: Decimal
    price_id: str | None = None

    @property
    def purchasable(self) -> bool:
        return self.price_id is not None


class Plans:
    def __init__(self, plans: dict[str, Plan]):
        if FREE not in plans:
            raise ConfigError("plans: a 'free' plan is required (the plan of every organisation without a subscription)")
        self._plans = dict(plans)
        self._by_price = {p.price_id: p for p in plans.values() if p.price_id}

    def __contains__(self, name: object) -> bool:
        return name in self._plans

    def __iter__(self):
        return iter(self._plans.values())

    def get(self, name: str) -> Plan:
        return self._plans[name]

    def by_price(self, price_id: str | None) -> Plan | None:
        return self._by_price.get(price_id) if price_id else None

    def effective(self, plan: str | None, status: str | None) -> Plan:
        """The plan whose limits apply: the subscribed one while the subscription holds, else free."""
        if plan in self._plans and (plan == FREE or status in PLAN_HOLDING_STATUSES):
            return self._plans[plan]
        return self._plans[FREE]


def parse_price_ids(spec: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, sep, price = part.partition("=")
        name, price = name.strip(), price.strip()
        if not sep or not name or not price.startswith("price_"):
            raise ConfigError(f"config billing.price_ids: expected plan=price_..., got {part!r}")
        if name in out:
            raise ConfigError(f"config billing.price_ids: plan {name!r} appears twice")
        out[name] = price
    return out


def load_plans(path: str | Path, price_ids: str = "") -> Plans:
    path = Path(path)
    if not path.is_absolute():
        path = REPO_ROOT / path
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config billing.plans_file: {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config billing.plans_file: invalid TOML ({exc})") from None
    table = raw.get("plans")
    if not isinstance(table, dict) or not table:
        raise ConfigError("plans: expected [plans.<name>] tables")
    prices = parse_price_ids(price_ids)
    plans: dict[str, Plan] = {}
    for name, spec in table.items():
        where = f"plans.{name}"
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: expected a table")
        forbidden = _FORBIDDEN & set(spec)
        if forbidden:
            raise ConfigError(f"{where}: plans never limit conversations or messages (remove {', '.join(sorted(forbidden))})")
        unknown = set(spec) - _KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_KEYS))})")
        for key in ("seats", "apps"):
            value = spec.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{where}.{key}: expected a whole number of at least 1")
        try:
            price = Decimal(str(spec.get("monthly_price", "0")))
        except InvalidOperation:
            raise ConfigError(f"{where}.monthly_price: expected a decimal string") from None
        plans[name] = Plan(name, str(spec.get("title", name.title())), spec["seats"], spec["apps"], price,
                           prices.get(name))
    unknown_prices = set(prices) - set(plans)
    if unknown_prices:
        raise ConfigError(f"config billing.price_ids: no such plan(s) {', '.join(sorted(unknown_prices))}")
    if plans[FREE].price_id if FREE in plans else False:
        raise ConfigError("config billing.price_ids: the free plan has no Stripe price")
    return Plans(plans)


def plans_from_config(config) -> Plans:
    return load_plans(config.billing.plans_file, config.billing.price_ids)
