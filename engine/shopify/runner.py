"""The Shopify sync loop of the engine worker process: ``run_shopify_sync(config, pool, stop_event)``.

Isolation from chat: the loop is its own task with its own aiohttp session (every request
bounded by ``shopify.request_timeout``), at most ``shopify.concurrency`` runs at a time, and
no database connection is held while a request is in flight. A hanging or failing Partner
API only delays revenue data; the worker's persistence loop and the gateways never wait on it.

Each run claims its connection (status ``syncing``, a lease renewed at every page), so several
worker processes share the connections without syncing one twice; a crashed run's lease
expires and another worker takes over from the last committed page.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import asyncpg

from engine.shopify import connections, metrics
from engine.shopify.client import PartnerClient
from engine.shopify.errors import PartnerApiError
from engine.shopify.records import format_time
from engine.shopify.sync import ShopifySync, SyncOutcome, Uninstall, utcnow

log = logging.getLogger("convot.shopify.runner")

UninstallHook = Callable[[uuid.UUID, Uninstall], Awaitable[None]]


@dataclass(frozen=True)
class RunReport:
    org_id: uuid.UUID
    claimed: bool
    status: str | None = None          # the connection's status after the run
    error: str | None = None
    outcome: SyncOutcome | None = None


def lease_seconds(settings) -> int:
    return max(300, int(settings.request_timeout * 10))


async def sync_one(pool: asyncpg.Pool, settings, session: aiohttp.ClientSession, encryptor, org_id: uuid.UUID, *,
                   on_uninstall: UninstallHook | None = None, now: Callable = utcnow) -> RunReport:
    """Claim one connection if due, run it, record the result. Never raises for Shopify's faults."""
    from convot.crypto import CryptoError

    claimed = await connections.claim(pool, org_id, lease_seconds(settings))
    if claimed is None:
        return RunReport(org_id, claimed=False)
    state = claimed.sync_state
    outcome: SyncOutcome | None = None
    error: str | None = None
    metrics.RUNNING.inc()
    try:
        token = encryptor.decrypt(claimed.token_enc, connections.token_aad(org_id)).decode()
        client = PartnerClient.from_config(session, settings, partner_org_id=claimed.partner_org_id, token=token)
        outcome = await ShopifySync(pool, settings, now=now).run(org_id, client, state)
    except PartnerApiError as exc:
        error = exc.describe()
    except CryptoError:
        error = "shopify_token_unreadable: the stored token no longer decrypts; connect again"
    except asyncio.CancelledError:
        # Shutting down: hand the connection back (not a failure) and let the next worker resume.
        await _release(pool, org_id, state)
        raise
    except Exception as exc:  # noqa: BLE001  a bug or a database error fails this run, visibly, not the loop
        error = f"shopify_sync_internal: {type(exc).__name__}"
        log.warning("shopify sync run failed unexpectedly", exc_info=True,
                    extra={"org_id": str(org_id), "error_type": type(exc).__name__})
    finally:
        metrics.RUNNING.dec()

    state.setdefault("progress", {})["running"] = False
    if error is None:
        state["last_result"] = outcome.to_json(now(), None)
        await connections.record_success(pool, org_id, state, settings)
        metrics.RUNS.labels("ok").inc()
        metrics.LAST_SUCCESS.set(time.time())
        log.info("shopify sync done", extra={"org_id": str(org_id), "new_transactions": outcome.new_transactions,
                                             "new_events": outcome.new_events,
                                             "merchants_updated": outcome.merchants_updated})
        if on_uninstall is not None:
            for uninstall in outcome.recent_uninstalls:
                try:
                    await on_uninstall(org_id, uninstall)
                except Exception as exc:  # noqa: BLE001  a failed notice never fails the sync
                    log.warning("uninstall notice failed", extra={"org_id": str(org_id), "error_type": type(exc).__name__})
        return RunReport(org_id, True, "active", None, outcome)

    state["last_result"] = (outcome or SyncOutcome()).to_json(now(), error)
    new_status = await connections.record_failure(pool, org_id, state, error, claimed.consecutive_failures, settings)
    metrics.RUNS.labels("stopped" if new_status == "stopped" else "failed").inc()
    log.warning("shopify sync failed", extra={"org_id": str(org_id), "error_code": error.split(":", 1)[0],
                                              "failures": claimed.consecutive_failures + 1, "status": new_status})
    return RunReport(org_id, True, new_status, error, outcome)


async def _release(pool: asyncpg.Pool, org_id: uuid.UUID, state: dict) -> None:
    try:
        async with asyncio.timeout(2):
            from convot.db import scoped

            async with scoped(pool, org_id=org_id) as conn:
                await conn.execute(
                    """UPDATE shopify_connections SET status = 'active', sync_started_at = NULL, next_sync_at = now(),
                           sync_state = $2 WHERE org_id = $1 AND status = 'syncing'""", org_id, state)
    except (asyncio.TimeoutError, asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
        pass  # the lease expires and another run takes over


async def run_shopify_sync(config, pool: asyncpg.Pool, stop_event: asyncio.Event, *, encryptor=None,
                           on_uninstall: UninstallHook | None = None, tick: float | None = None) -> None:
    """Poll for due connections until ``stop_event`` is set; then cancel runs and close the session."""
    from convot.crypto import Encryptor

    settings = config.shopify
    encryptor = encryptor or Encryptor.from_config(config)
    tick = tick if tick is not None else min(5.0, settings.poll_interval)
    running: dict[uuid.UUID, asyncio.Task] = {}
    slots = asyncio.Semaphore(settings.concurrency)
    timeout = aiohttp.ClientTimeout(total=settings.request_timeout, sock_connect=min(10.0, settings.request_timeout))
    connector = aiohttp.TCPConnector(limit=settings.concurrency * 2)

    async def one(org_id: uuid.UUID) -> None:
        async with slots:
            try:
                await sync_one(pool, settings, session, encryptor, org_id, on_uninstall=on_uninstall)
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
                log.warning("shopify sync could not record its run", extra={"org_id": str(org_id),
                                                                           "error_type": type(exc).__name__})

    log.info("shopify sync started", extra={"concurrency": settings.concurrency, "poll_interval": settings.poll_interval,
                                            "at": format_time(utcnow())})
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        try:
            while not stop_event.is_set():
                try:
                    due = await connections.due_connections(pool, settings.concurrency * 4, lease_seconds(settings))
                    counts = await connections.connection_counts(pool)
                    # every status, 0 included: a status nobody is in any more must not keep its old count
                    for status in sorted({*metrics.CONNECTION_STATUSES, *counts}):
                        metrics.CONNECTIONS.labels(status).set(counts.get(status, 0))
                except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
                    log.warning("shopify sync could not list due connections", extra={"error_type": type(exc).__name__})
                    due = []
                for org_id in due:
                    if org_id not in running:
                        task = asyncio.create_task(one(org_id), name=f"shopify-sync-{org_id}")
                        running[org_id] = task
                        task.add_done_callback(lambda t, org=org_id: running.pop(org, None))
                try:
                    await asyncio.wait_for(stop_event.wait(), tick)
                except asyncio.TimeoutError:
                    pass
        finally:
            tasks = list(running.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    log.info("shopify sync stopped")


async def run_in_worker(config, pool: asyncpg.Pool, redis, stop_event: asyncio.Event) -> None:
    """What the engine worker process starts: the sync loop with the churn notice wired to the
    engine (its own EngineClient on the worker's Redis and pool)."""
    from engine.client import EngineClient
    from engine.shopify.churn import uninstall_notifier

    engine = EngineClient(config, redis=redis, pool=pool)
    try:
        await engine.start()
        await run_shopify_sync(config, pool, stop_event, on_uninstall=uninstall_notifier(pool, engine))
    except Exception:  # noqa: BLE001  the revenue sync failing to start must never take persistence down
        log.exception("shopify sync could not run in this worker")
    finally:
        await engine.close()
