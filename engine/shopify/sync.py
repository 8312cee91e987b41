"""Incremental copy of a Partner organisation's transactions and app events into PostgreSQL.

One run of one connection (:meth:`ShopifySync.run`):

1. **transactions** feed: ``transactions(createdAtMin: since - overlap)`` page by page; every
   page is written in one transaction together with the feed's cursor, so a run that fails
   halfway resumes at the next page. Rows are deduplicated by id (``ON CONFLICT DO NOTHING``):
   the overlap window re-reads recent items on purpose and they are dropped here. Apps are
   discovered from the transactions (and from Convot apps linked to a Shopify app).
2. **events** feed per app: ``app(id).events(occurredAtMin: since - overlap)``, same rules;
   events have no id in the API, ours is a stable hash (``records.AppEvent.stable_id``).
3. **merchants**: every (shop, app) that got a new row, whose trial ended, or whose events
   passed the retention is re-derived by the pure model; a row is written only if a derived
   value changed, so a second run over the same data changes nothing.

No database connection is held while waiting for Shopify. Failures are typed
(:mod:`engine.shopify.errors`); the caller (``runner``) records them on the connection.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import asyncpg

from convot.db import scoped
from engine.shopify import metrics
from engine.shopify.client import PartnerClient
from engine.shopify.model import Lifecycle, MerchantSnapshot, advance_baseline, derive_merchant
from engine.shopify.records import AppEvent, Transaction, format_time, parse_time

log = logging.getLogger("convot.shopify.sync")

UNINSTALL_NOTICE_WINDOW = timedelta(hours=48)
_MERCHANT_CHUNK = 200


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Uninstall:
    """A merchant uninstalled an app within the last 48 hours (seen for the first time now)."""

    shop_domain: str
    app_gid: str
    app_name: str
    occurred_at: datetime
    event_id: str = ""


@dataclass
class SyncOutcome:
    new_transactions: int = 0
    new_events: int = 0
    merchants_updated: int = 0
    apps: int = 0
    pages: int = 0
    throttled: int = 0
    recent_uninstalls: list[Uninstall] = field(default_factory=list)

    def to_json(self, at: datetime, error: str | None) -> dict:
        return {
            "ok": error is None, "at": format_time(at), "error": error,
            "new_transactions": self.new_transactions, "new_events": self.new_events,
            "merchants_updated": self.merchants_updated, "apps": self.apps, "pages": self.pages,
            "throttled": self.throttled,
        }


@dataclass
class Feed:
    """Where one feed stands: ``since`` = newest item time fully copied; ``pending`` = an
    interrupted pagination (its createdAtMin, the cursor after the last committed page, and
    the newest time seen so far)."""

    since: str | None = None
    pending: dict | None = None

    @classmethod
    def from_json(cls, value: dict | None) -> "Feed":
        value = value or {}
        return cls(value.get("since"), value.get("pending"))

    def to_json(self) -> dict:
        return {"since": self.since, "pending": self.pending}


def _later(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if parse_time(a, "since") >= parse_time(b, "since") else b


class ShopifySync:
    def __init__(self, pool: asyncpg.Pool, settings, *, now: Callable[[], datetime] = utcnow):
        self.pool = pool
        self.settings = settings
        self.now = now

    # -- the run ----------------------------------------------------------------------------
    async def run(self, org_id: uuid.UUID, client: PartnerClient, state: dict) -> SyncOutcome:
        """Copy what is new and re-derive touched merchants. ``state`` is the connection's
        ``sync_state`` (updated in place and saved page by page)."""
        outcome = SyncOutcome()
        state.setdefault("feeds", {})
        state["progress"] = {"running": True, "started_at": format_time(self.now()), "feed": None, "pages": 0}
        touched: set[tuple[str, str]] = set()

        await self._transactions(org_id, client, state, outcome, touched)
        apps = await self._known_apps(org_id)
        outcome.apps = len(apps)
        for app_gid in apps:
            await self._events(org_id, app_gid, client, state, outcome, touched)
        outcome.merchants_updated = await self.refresh_merchants(org_id, touched)
        outcome.throttled = client.throttled
        state["progress"] = {"running": False, "feed": None, "pages": outcome.pages}
        return outcome

    def _window_start(self, feed: Feed) -> str | None:
        if feed.since is None:
            return None
        return format_time(parse_time(feed.since, "since") - timedelta(seconds=self.settings.overlap_seconds))

    async def _transactions(self, org_id, client: PartnerClient, state: dict, outcome: SyncOutcome, touched: set) -> None:
        name = "transactions"
        feed = Feed.from_json(state["feeds"].get(name))
        pending = feed.pending or {"min": self._window_start(feed), "after": None, "max_seen": feed.since}
        while True:
            page = await client.transactions(first=self.settings.page_size, after=pending["after"],
                                             created_at_min=pending["min"])
            parsed = [(Transaction.from_node(node), node) for _cursor, node in page.edges]
            records = [tx for tx, _node in parsed if tx is not None]
            raws = {tx.id: node for tx, node in parsed if tx is not None}
            newest = max((format_time(tx.created_at) for tx in records), default=None)
            pending = {"min": pending["min"], "after": page.last_cursor or pending["after"],
                       "max_seen": _later(pending["max_seen"], newest)}
            if page.has_next and page.last_cursor is not None:
                feed.pending = pending
            else:
                feed = Feed(since=pending["max_seen"], pending=None)
            state["feeds"][name] = feed.to_json()
            outcome.pages += 1
            state["progress"].update(feed=name, pages=outcome.pages)
            async with scoped(self.pool, org_id=org_id) as conn:
                inserted = await _insert_transactions(conn, org_id, records, raws)
                await _upsert_apps(conn, org_id, {tx.app_gid: tx.app_name for tx in records})
                await _save_state(conn, org_id, state)
            outcome.new_transactions += len(inserted)
            metrics.ITEMS.labels("transactions").inc(len(inserted))
            for tx in records:
                if tx.id in inserted and tx.shop_domain:
                    touched.add((tx.shop_domain, tx.app_gid))
            if feed.pending is None:
                return

    async def _events(self, org_id, app_gid: str, client: PartnerClient, state: dict, outcome: SyncOutcome,
                      touched: set) -> None:
        name = f"events:{app_gid}"
        feed = Feed.from_json(state["feeds"].get(name))
        pending = feed.pending or {"min": self._window_start(feed), "after": None, "max_seen": feed.since}
        notice_after = self.now() - UNINSTALL_NOTICE_WINDOW
        while True:
            page = await client.app_events(app_gid, first=self.settings.page_size, after=pending["after"],
                                           occurred_at_min=pending["min"])
            records = [AppEvent.from_node(node, app_gid) for _cursor, node in page.edges]
            raws = {record.id: node for record, (_c, node) in zip(records, page.edges)}
            newest = max((format_time(e.occurred_at) for e in records), default=None)
            pending = {"min": pending["min"], "after": page.last_cursor or pending["after"],
                       "max_seen": _later(pending["max_seen"], newest)}
            if page.has_next and page.last_cursor is not None:
                feed.pending = pending
            else:
                feed = Feed(since=pending["max_seen"], pending=None)
            state["feeds"][name] = feed.to_json()
            outcome.pages += 1
            state["progress"].update(feed=name, pages=outcome.pages)
            async with scoped(self.pool, org_id=org_id) as conn:
                inserted = await _insert_events(conn, org_id, records, raws)
                if page.app_name:
                    await _upsert_apps(conn, org_id, {app_gid: page.app_name})
                await _save_state(conn, org_id, state)
            outcome.new_events += len(inserted)
            metrics.ITEMS.labels("events").inc(len(inserted))
            for event in records:
                if event.id in inserted:
                    touched.add((event.shop_domain, event.app_gid))
                    if event.type == "RELATIONSHIP_UNINSTALLED" and event.occurred_at >= notice_after:
                        outcome.recent_uninstalls.append(
                            Uninstall(event.shop_domain, app_gid, page.app_name, event.occurred_at, event.id))
            if feed.pending is None:
                return

    async def _known_apps(self, org_id) -> list[str]:
        async with scoped(self.pool, org_id=org_id) as conn:
            rows = await conn.fetch(
                """SELECT app_gid FROM shopify_apps WHERE org_id = $1
                   UNION SELECT shopify_app_gid FROM apps WHERE org_id = $1 AND shopify_app_gid IS NOT NULL
                   ORDER BY 1""",
                org_id,
            )
        return [r["app_gid"] for r in rows]

    # -- merchants --------------------------------------------------------------------------
    async def refresh_merchants(self, org_id, touched: Iterable[tuple[str, str]]) -> int:
        """Re-derive the touched merchants, those whose trial has ended and those with events
        past the retention; write the ones that changed. Returns how many changed."""
        now = self.now()
        cutoff = now - timedelta(days=self.settings.event_retention_days)
        keys = set(touched)
        async with scoped(self.pool, org_id=org_id) as conn:
            for row in await conn.fetch(
                """SELECT shop_domain, app_gid FROM shopify_merchants
                   WHERE org_id = $1 AND status = 'trialing' AND trial_ends_at <= $2""", org_id, now):
                keys.add((row["shop_domain"], row["app_gid"]))
            for row in await conn.fetch(
                "SELECT DISTINCT shop_domain, app_gid FROM shopify_events WHERE org_id = $1 AND occurred_at <= $2",
                org_id, cutoff):
                keys.add((row["shop_domain"], row["app_gid"]))
        changed = 0
        ordered = sorted(keys)
        for start in range(0, len(ordered), _MERCHANT_CHUNK):
            chunk = ordered[start:start + _MERCHANT_CHUNK]
            async with scoped(self.pool, org_id=org_id) as conn:
                changed += await self._refresh_chunk(conn, org_id, chunk, now, cutoff)
        metrics.MERCHANTS_UPDATED.inc(changed)
        return changed

    async def _refresh_chunk(self, conn, org_id, chunk: list[tuple[str, str]], now: datetime, cutoff: datetime) -> int:
        shops = [shop for shop, _app in chunk]
        apps = [app for _shop, app in chunk]
        stored = {(r["shop_domain"], r["app_gid"]): r for r in await conn.fetch(
            """SELECT m.* FROM shopify_merchants m
               JOIN unnest($2::text[], $3::text[]) AS k(shop, app) ON m.shop_domain = k.shop AND m.app_gid = k.app
               WHERE m.org_id = $1""", org_id, shops, apps)}
        events: dict[tuple[str, str], list[AppEvent]] = {key: [] for key in chunk}
        for r in await conn.fetch(
            """SELECT e.app_gid, e.shop_domain, e.raw FROM shopify_events e
               JOIN unnest($2::text[], $3::text[]) AS k(shop, app) ON e.shop_domain = k.shop AND e.app_gid = k.app
               WHERE e.org_id = $1""", org_id, shops, apps):
            events[(r["shop_domain"], r["app_gid"])].append(AppEvent.from_node(r["raw"], r["app_gid"]))
        transactions: dict[tuple[str, str], list[Transaction]] = {key: [] for key in chunk}
        for r in await conn.fetch(
            """SELECT t.app_gid, t.shop_domain, t.raw FROM shopify_transactions t
               JOIN unnest($2::text[], $3::text[]) AS k(shop, app) ON t.shop_domain = k.shop AND t.app_gid = k.app
               WHERE t.org_id = $1""", org_id, shops, apps):
            tx = Transaction.from_node(r["raw"])
            if tx is not None:
                transactions[(r["shop_domain"], r["app_gid"])].append(tx)

        changed = 0
        for key in chunk:
            shop, app = key
            row = stored.get(key)
            baseline = Lifecycle.from_json(row["baseline"]) if row and row["baseline"] else None
            baseline_until = row["baseline_until"] if row else None
            merchant_events = events[key]
            if any(e.occurred_at <= cutoff for e in merchant_events) and (baseline_until is None or baseline_until < cutoff):
                baseline = advance_baseline(shop, app, baseline=baseline, baseline_until=baseline_until,
                                            events=merchant_events, transactions=transactions[key], cutoff=cutoff)
                baseline_until = cutoff
                await conn.execute(
                    "DELETE FROM shopify_events WHERE org_id = $1 AND shop_domain = $2 AND app_gid = $3 AND occurred_at <= $4",
                    org_id, shop, app, cutoff)
                merchant_events = [e for e in merchant_events if e.occurred_at > cutoff]
            elif baseline_until is not None:
                stale = [e for e in merchant_events if e.occurred_at <= baseline_until]
                if stale:  # re-read after the baseline moved past them: already folded in
                    await conn.execute(
                        "DELETE FROM shopify_events WHERE org_id = $1 AND shop_domain = $2 AND app_gid = $3 AND occurred_at <= $4",
                        org_id, shop, app, baseline_until)
            if not merchant_events and not transactions[key] and baseline is None:
                continue
            snapshot = derive_merchant(shop, app, events=merchant_events, transactions=transactions[key], now=now,
                                       baseline=baseline, baseline_until=baseline_until)
            values = _merchant_values(snapshot, baseline, baseline_until)
            if row is not None and all(_same(row[column], value) for column, value in values.items()):
                continue
            columns = list(values)
            placeholders = ", ".join(f"${i + 2}" for i in range(len(columns)))
            updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in ("shop_domain", "app_gid"))
            await conn.execute(
                f"""INSERT INTO shopify_merchants (org_id, {", ".join(columns)}, updated_at)
                    VALUES ($1, {placeholders}, now())
                    ON CONFLICT (org_id, shop_domain, app_gid) DO UPDATE SET {updates}, updated_at = now()""",
                org_id, *values.values())
            changed += 1
        return changed


def _merchant_values(snapshot: MerchantSnapshot, baseline: Lifecycle | None, baseline_until: datetime | None) -> dict:
    return {
        "shop_domain": snapshot.shop_domain,
        "app_gid": snapshot.app_gid,
        "plan": snapshot.plan,
        "status": snapshot.status.value,
        "mrr_amount": snapshot.mrr,
        "currency": snapshot.currency,
        "lifetime_gross": snapshot.lifetime_gross,
        "installed_at": snapshot.installed_at,
        "uninstalled_at": snapshot.uninstalled_at,
        "billing_interval": snapshot.billing_interval,
        "charge_id": snapshot.charge_id,
        "trial_ends_at": snapshot.trial_ends_at,
        "lifetime_by_currency": {c: str(v) for c, v in snapshot.lifetime_by_currency.items()},
        "timeline": [p.to_json() for p in snapshot.timeline],
        "baseline": baseline.to_json() if baseline else None,
        "baseline_until": baseline_until,
    }


def _same(stored, derived) -> bool:
    if isinstance(derived, Decimal) or isinstance(stored, Decimal):
        return stored is not None and derived is not None and Decimal(stored) == Decimal(derived)
    if isinstance(derived, str) and isinstance(stored, str):
        return stored.rstrip() == derived  # char(3)
    return stored == derived


async def _insert_transactions(conn, org_id, records: list[Transaction], raws: dict[str, dict]) -> set[str]:
    records = list({tx.id: tx for tx in records}.values())
    if not records:
        return set()
    raw = [raws[tx.id] for tx in records]
    rows = await conn.fetch(
        """INSERT INTO shopify_transactions
               (org_id, id, type, app_gid, shop_domain, created_at, gross_amount, net_amount, currency, billing_interval, raw)
           SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                                    $7::numeric[], $8::numeric[], $9::text[], $10::text[], $11::jsonb[])
           ON CONFLICT (org_id, id) DO NOTHING
           RETURNING id""",
        org_id,
        [tx.id for tx in records], [tx.type for tx in records], [tx.app_gid for tx in records],
        [tx.shop_domain for tx in records], [tx.created_at for tx in records],
        [tx.gross.amount if tx.gross else None for tx in records],
        [tx.net.amount if tx.net else None for tx in records],
        [(tx.gross or tx.net).currency if (tx.gross or tx.net) else None for tx in records],
        [tx.billing_interval for tx in records], raw,
    )
    return {r["id"] for r in rows}


async def _insert_events(conn, org_id, records: list[AppEvent], raws: dict[str, dict]) -> set[str]:
    unique = {e.id: e for e in records}
    if not unique:
        return set()
    events = list(unique.values())
    rows = await conn.fetch(
        """INSERT INTO shopify_events (org_id, id, type, app_gid, shop_domain, occurred_at, raw)
           SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::jsonb[])
           ON CONFLICT (org_id, id) DO NOTHING
           RETURNING id""",
        org_id, [e.id for e in events], [e.type for e in events], [e.app_gid for e in events],
        [e.shop_domain for e in events], [e.occurred_at for e in events], [raws[e.id] for e in events],
    )
    return {r["id"] for r in rows}


async def _upsert_apps(conn, org_id, names: dict[str, str]) -> None:
    names = {gid: name for gid, name in names.items() if gid}
    if not names:
        return
    await conn.execute(
        """INSERT INTO shopify_apps (org_id, app_gid, name)
           SELECT $1, * FROM unnest($2::text[], $3::text[])
           ON CONFLICT (org_id, app_gid) DO UPDATE SET name = EXCLUDED.name
           WHERE shopify_apps.name IS DISTINCT FROM EXCLUDED.name AND EXCLUDED.name <> ''""",
        org_id, list(names), list(names.values()))


async def _save_state(conn, org_id, state: dict) -> None:
    # Also renews the run's lease: a live run is never taken over.
    await conn.execute(
        "UPDATE shopify_connections SET sync_state = $2, sync_started_at = now() WHERE org_id = $1 AND status = 'syncing'",
        org_id, state)

