"""Prometheus metrics of the Shopify sync (served on the engine worker's /metrics).

No organisation or shop labels: cardinality stays fixed; per-organisation progress lives in
``shopify_connections.sync_state`` and is shown in the inbox settings.
"""

from prometheus_client import Counter, Gauge

REQUESTS = Counter(
    "convot_shopify_requests_total", "Partner API requests by operation and outcome",
    ["operation", "outcome"],
)
THROTTLED = Counter("convot_shopify_throttled_total", "Throttled Partner API answers (HTTP 429 or THROTTLED)")
RUNS = Counter("convot_shopify_sync_runs_total", "Sync runs by result (ok, failed, stopped)", ["result"])
ITEMS = Counter("convot_shopify_synced_items_total", "New items copied (duplicates excluded)", ["feed"])
MERCHANTS_UPDATED = Counter("convot_shopify_merchants_updated_total", "Merchant rows whose derived values changed")
RUNNING = Gauge("convot_shopify_sync_running", "Connections being synced right now by this process")
CONNECTIONS = Gauge("convot_shopify_connections", "Shopify connections by status", ["status"])
CONNECTION_STATUSES = ("active", "syncing", "stopped")      # shopify_connections.status (0001_schema.sql)
LAST_SUCCESS = Gauge("convot_shopify_last_success_timestamp_seconds", "Unix time of this process's last successful run")
for _result in ("ok", "failed", "stopped"):      # every result's series exists from the start (rate() works)
    RUNS.labels(_result)
