"""Partner API nodes -> typed records (pure).

Money is ``Decimal`` parsed from the API's decimal strings, never a float. A node that lacks
what our query asked for raises :class:`BadResponse`; a transaction type we do not copy
returns ``None``. Shop domains are normalised (lower case, no scheme), so the same shop is
one key everywhere.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

from engine.shopify.errors import BadResponse
from engine.shopify.queries import TRANSACTION_TYPENAMES

SUBSCRIPTION_SALE = "APP_SUBSCRIPTION_SALE"
DEDUCTIONS = frozenset({"APP_SALE_ADJUSTMENT", "APP_SALE_CREDIT"})


@dataclass(frozen=True)
class Money:
    amount: Decimal
    currency: str

    def to_json(self) -> dict:
        return {"amount": str(self.amount), "currency": self.currency}

    @classmethod
    def from_json(cls, value: dict | None) -> "Money | None":
        return None if value is None else cls(Decimal(value["amount"]), value["currency"])


def parse_decimal(value: object, where: str) -> Decimal:
    """A decimal from the API's string (or int); floats are refused: they are not exact."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadResponse(f"{where}: expected a decimal string")
    try:
        result = Decimal(value)
    except InvalidOperation:
        raise BadResponse(f"{where}: expected a decimal string") from None
    if not result.is_finite():
        raise BadResponse(f"{where}: expected a finite decimal")
    return result


def parse_money(value: object, where: str) -> Money | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadResponse(f"{where}: expected a Money object")
    currency = value.get("currencyCode")
    if not isinstance(currency, str) or len(currency) != 3:
        raise BadResponse(f"{where}.currencyCode: expected a 3-letter code")
    return Money(parse_decimal(value.get("amount"), f"{where}.amount"), currency)


def parse_time(value: object, where: str) -> datetime:
    if not isinstance(value, str):
        raise BadResponse(f"{where}: expected an ISO-8601 date time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadResponse(f"{where}: expected an ISO-8601 date time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def format_time(value: datetime) -> str:
    """The API's own format: UTC with a Z."""
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def normalise_shop(domain: object) -> str:
    """``https://Foo.myshopify.com/`` -> ``foo.myshopify.com``."""
    if not isinstance(domain, str) or not domain.strip():
        raise BadResponse("shop.myshopifyDomain: expected a domain")
    text = domain.strip().lower()
    if "://" in text:
        text = text.split("://", 1)[1]
    return text.split("/", 1)[0]


def is_myshopify_domain(value: str | None) -> bool:
    """True for ``<name>.myshopify.com`` with a valid shop name (letters, digits, hyphens)."""
    if not value or not value.endswith(".myshopify.com"):
        return False
    name = value[: -len(".myshopify.com")]
    return 0 < len(name) <= 63 and name[0] != "-" and all(c.isascii() and (c.isalnum() or c == "-") for c in name) \
        and name == name.lower()


def _app(node: dict, where: str) -> tuple[str, str]:
    app = node.get("app")
    if not isinstance(app, dict) or not isinstance(app.get("id"), str):
        raise BadResponse(f"{where}.app: expected an App with an id")
    name = app.get("name")
    return app["id"], name if isinstance(name, str) else ""


@dataclass(frozen=True)
class Transaction:
    id: str
    type: str                    # TransactionType value, e.g. APP_SUBSCRIPTION_SALE
    app_gid: str
    app_name: str
    shop_domain: str | None
    created_at: datetime
    gross: Money | None
    net: Money | None
    charge_id: str | None
    billing_interval: str | None  # subscription sales only

    @property
    def revenue(self) -> Money | None:
        """What the merchant paid (gross; net when Shopify gave no gross), signed: deductions < 0."""
        money = self.gross if self.gross is not None else self.net
        if money is None:
            return None
        if self.type in DEDUCTIONS:
            return Money(-abs(money.amount), money.currency)
        return money

    @classmethod
    def from_node(cls, node: object) -> "Transaction | None":
        if not isinstance(node, dict):
            raise BadResponse("transaction: expected an object")
        typename = node.get("__typename")
        kind = TRANSACTION_TYPENAMES.get(typename) if isinstance(typename, str) else None
        if kind is None:
            return None
        tid = node.get("id")
        if not isinstance(tid, str) or not tid:
            raise BadResponse("transaction.id: expected an id")
        where = f"transaction {tid}"
        app_gid, app_name = _app(node, where)
        shop = node.get("shop")
        shop_domain = normalise_shop(shop.get("myshopifyDomain")) if isinstance(shop, dict) else None
        interval = node.get("billingInterval") if kind == SUBSCRIPTION_SALE else None
        if interval is not None and not isinstance(interval, str):
            raise BadResponse(f"{where}.billingInterval: expected an enum value")
        charge = node.get("chargeId")
        return cls(
            id=tid,
            type=kind,
            app_gid=app_gid,
            app_name=app_name,
            shop_domain=shop_domain,
            created_at=parse_time(node.get("createdAt"), f"{where}.createdAt"),
            gross=parse_money(node.get("grossAmount"), f"{where}.grossAmount"),
            net=parse_money(node.get("netAmount"), f"{where}.netAmount"),
            charge_id=charge if isinstance(charge, str) else None,
            billing_interval=interval,
        )


@dataclass(frozen=True)
class AppEvent:
    id: str                       # stable hash: the Partner API gives events no id
    type: str                     # AppEventTypes value, e.g. RELATIONSHIP_INSTALLED
    app_gid: str
    shop_domain: str
    occurred_at: datetime
    charge_id: str | None = None
    charge_name: str | None = None
    charge_amount: Money | None = None
    charge_test: bool = False
    billing_on: datetime | None = None
    reason: str | None = None     # uninstall reason, when the merchant gave one

    @staticmethod
    def stable_id(type_: str, app_gid: str, shop: str, occurred_at: datetime, charge_id: str | None) -> str:
        key = "|".join((type_, app_gid, shop, format_time(occurred_at), charge_id or ""))
        return "evt_" + hashlib.sha256(key.encode()).hexdigest()[:40]

    @classmethod
    def from_node(cls, node: object, app_gid: str) -> "AppEvent":
        if not isinstance(node, dict):
            raise BadResponse("event: expected an object")
        type_ = node.get("type")
        if not isinstance(type_, str) or not type_:
            raise BadResponse("event.type: expected an enum value")
        where = f"event {type_}"
        shop = node.get("shop")
        if not isinstance(shop, dict):
            raise BadResponse(f"{where}.shop: expected a Shop")
        shop_domain = normalise_shop(shop.get("myshopifyDomain"))
        occurred = parse_time(node.get("occurredAt"), f"{where}.occurredAt")
        charge = node.get("charge") if node.get("charge") is not None else node.get("appCredit")
        charge_id = charge_name = billing_on = None
        amount = None
        test = False
        if charge is not None:
            if not isinstance(charge, dict) or not isinstance(charge.get("id"), str):
                raise BadResponse(f"{where}.charge: expected a charge with an id")
            charge_id = charge["id"]
            charge_name = charge.get("name") if isinstance(charge.get("name"), str) else None
            amount = parse_money(charge.get("amount"), f"{where}.charge.amount")
            test = charge.get("test") is True
            if charge.get("billingOn") is not None:
                billing_on = parse_time(charge["billingOn"], f"{where}.charge.billingOn")
        reason = node.get("reason") if isinstance(node.get("reason"), str) else None
        return cls(
            id=cls.stable_id(type_, app_gid, shop_domain, occurred, charge_id),
            type=type_, app_gid=app_gid, shop_domain=shop_domain, occurred_at=occurred,
            charge_id=charge_id, charge_name=charge_name, charge_amount=amount, charge_test=test,
            billing_on=billing_on, reason=reason,
        )
