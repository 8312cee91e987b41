"""Reading the revenue data: merchant panel, contact linking, dashboard, churn conversation.

Linking rule (the only way a contact reaches revenue data): the contact's ``shop`` proven by
``shop_hash`` (``shop_verified``), or its ``external_id`` proven by ``user_hash`` (``verified``)
when that external id is a myshopify domain. Anything else links to nothing. Who may see the
result (owners, members with the Revenue permission) is decided by the admin API's route.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from convot.db import scoped
from engine.shopify.model import Lifecycle, MerchantHistory, TimelinePoint, dashboard
from engine.shopify.records import format_time, is_myshopify_domain

RECENT_EVENTS = 20
CHURN_CONVERSATION_WINDOW = timedelta(days=7)


def verified_shop(*, shop: str | None, shop_verified: bool, external_id: str | None, verified: bool) -> str | None:
    """The myshopify domain a contact is proven to be, or None."""
    if shop_verified and shop:
        candidate = shop.strip().lower()
        if is_myshopify_domain(candidate):
            return candidate
    if verified and external_id:
        candidate = external_id.strip().lower()
        if is_myshopify_domain(candidate):
            return candidate
    return None


def _time(value: datetime | None) -> str | None:
    return format_time(value) if value else None


def _event_json(row) -> dict[str, Any]:
    raw = row["raw"] or {}
    charge = raw.get("charge") or raw.get("appCredit") or None
    out: dict[str, Any] = {"type": row["type"], "occurred_at": format_time(row["occurred_at"])}
    if isinstance(charge, dict):
        amount = charge.get("amount") or {}
        out["charge"] = {"name": charge.get("name"), "amount": amount.get("amount"), "currency": amount.get("currencyCode")}
    if raw.get("reason"):
        out["reason"] = raw["reason"]
    return out


async def merchant_panel(conn: asyncpg.Connection, org_id: uuid.UUID, shop_domain: str) -> list[dict]:
    """Per app the merchant uses: plan, status, MRR, lifetime value, recent lifecycle events."""
    rows = await conn.fetch(
        """SELECT m.*, a.name AS app_name FROM shopify_merchants m
           LEFT JOIN shopify_apps a ON a.org_id = m.org_id AND a.app_gid = m.app_gid
           WHERE m.org_id = $1 AND m.shop_domain = $2
           ORDER BY m.mrr_amount DESC, m.app_gid""", org_id, shop_domain)
    events = await conn.fetch(
        """SELECT app_gid, type, occurred_at, raw FROM (
               SELECT app_gid, type, occurred_at, raw,
                      row_number() OVER (PARTITION BY app_gid ORDER BY occurred_at DESC, id) AS n
               FROM shopify_events WHERE org_id = $1 AND shop_domain = $2) e
           WHERE n <= $3 ORDER BY occurred_at DESC""", org_id, shop_domain, RECENT_EVENTS)
    by_app: dict[str, list] = {}
    for event in events:
        by_app.setdefault(event["app_gid"], []).append(_event_json(event))
    return [{
        "shop_domain": r["shop_domain"],
        "app": {"app_gid": r["app_gid"], "name": r["app_name"]},
        "plan": r["plan"],
        "status": r["status"],
        "mrr": {"amount": str(r["mrr_amount"]), "currency": r["currency"].strip()},
        "lifetime_value": {"amount": str(r["lifetime_gross"]), "currency": r["currency"].strip()},
        "lifetime_by_currency": r["lifetime_by_currency"],
        "billing_interval": r["billing_interval"],
        "installed_at": _time(r["installed_at"]),
        "uninstalled_at": _time(r["uninstalled_at"]),
        "trial_ends_at": _time(r["trial_ends_at"]),
        "recent_events": by_app.get(r["app_gid"], []),
    } for r in rows]


async def merchant_for_contact(pool: asyncpg.Pool, org_id: uuid.UUID, contact_id: uuid.UUID) -> dict | None:
    """``{"shop_domain", "apps": [...]}`` for a contact linked by a verified shop; None otherwise
    (no such contact in this organisation, or no verified myshopify domain)."""
    async with scoped(pool, org_id=org_id) as conn:
        contact = await conn.fetchrow(
            "SELECT shop, shop_verified, external_id, verified FROM contacts WHERE org_id = $1 AND id = $2",
            org_id, contact_id)
        if contact is None:
            return None
        shop = verified_shop(shop=contact["shop"], shop_verified=contact["shop_verified"],
                             external_id=contact["external_id"], verified=contact["verified"])
        if shop is None:
            return None
        return {"shop_domain": shop, "apps": await merchant_panel(conn, org_id, shop)}


def history_from_row(row) -> MerchantHistory:
    timeline = tuple(TimelinePoint.from_json(p) for p in (row["timeline"] or []))
    baseline = Lifecycle.from_json(row["baseline"]) if row["baseline"] else None
    opens = baseline is not None and bool(timeline) and timeline[0].at == row["baseline_until"]
    return MerchantHistory(row["shop_domain"], row["app_gid"], timeline,
                           paid_before_timeline=bool(baseline and baseline.ever_paid), opens_with_baseline=opens)


async def revenue_dashboard(pool: asyncpg.Pool, org_id: uuid.UUID, now: datetime) -> dict:
    """MRR, ARR, active merchants, new/churned MRR, ARPU per range, overall and per app, with series."""
    async with scoped(pool, org_id=org_id) as conn:
        rows = await conn.fetch(
            "SELECT shop_domain, app_gid, timeline, baseline, baseline_until FROM shopify_merchants WHERE org_id = $1",
            org_id)
        apps = await conn.fetch("SELECT app_gid, name FROM shopify_apps WHERE org_id = $1", org_id)
    result = dashboard([history_from_row(r) for r in rows], now)
    result["app_names"] = {a["app_gid"]: a["name"] for a in apps}
    return result


async def churn_conversation(conn: asyncpg.Connection, org_id: uuid.UUID, shop_domain: str, app_gid: str,
                             now: datetime) -> uuid.UUID | None:
    """The merchant's most recent conversation of the last 7 days (preferring one from the
    Convot app linked to this Shopify app), through verified contacts only."""
    row = await conn.fetchrow(
        """SELECT c.id FROM conversations c
           JOIN contacts ct ON ct.id = c.contact_id AND ct.org_id = c.org_id
           LEFT JOIN apps a ON a.id = c.app_id AND a.org_id = c.org_id
           WHERE c.org_id = $1
             AND ((ct.shop_verified AND lower(ct.shop) = $2) OR (ct.verified AND lower(ct.external_id) = $2))
             AND (a.shopify_app_gid IS NULL OR a.shopify_app_gid = $3)
             AND COALESCE(c.last_message_at, c.created_at) >= $4
           ORDER BY (a.shopify_app_gid IS NOT DISTINCT FROM $3) DESC, COALESCE(c.last_message_at, c.created_at) DESC
           LIMIT 1""", org_id, shop_domain, app_gid, now - CHURN_CONVERSATION_WINDOW)
    return row["id"] if row else None
