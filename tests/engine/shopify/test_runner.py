"""The sync loop: picks due connections, stops cleanly, and a hanging Partner API holds nothing."""

import asyncio

import pytest

from convot.db import scoped
from engine.shopify import connections
from engine.shopify.runner import run_shopify_sync
from tests.engine.shopify import partner_dataset as ds


async def wait_for(predicate, what: str, attempts: int = 3000):
    """Poll until ``predicate()`` is true (a wait for a state, not a timing assertion).

    The budget (60 s) is generous on purpose: CI shares two cores with every server it starts."""
    for _ in range(attempts):
        if await predicate():
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"gave up waiting for {what}")


@pytest.fixture
async def connected(db, org, fake, settings, session, encryptor):
    ds.build(fake)
    await connections.connect(db, encryptor, session, settings, org_id=org, partner_org_id=fake.partner_org_id,
                              token=fake.token)
    return org


async def test_runner_syncs_a_due_connection_and_stops(db, connected, shopify_config, encryptor):
    stop = asyncio.Event()
    notices = []

    async def on_uninstall(org_id, uninstall):
        notices.append((org_id, uninstall.shop_domain))

    task = asyncio.create_task(run_shopify_sync(shopify_config, db, stop, encryptor=encryptor, tick=0.05,
                                                on_uninstall=on_uninstall))

    async def synced():
        shown = await connections.status(db, connected)
        return shown["last_sync_at"] is not None

    try:
        await wait_for(synced, "the first sync")
    finally:
        stop.set()
        await task
    shown = await connections.status(db, connected)
    assert shown["status"] == "active" and shown["last_result"]["ok"]
    assert notices == [(connected, "delta.myshopify.com")]
    async with scoped(db, org_id=connected) as conn:
        assert await conn.fetchval("SELECT count(*) FROM shopify_merchants WHERE org_id = $1", connected) == len(ds.EXPECTED)


async def test_hanging_partner_api_holds_no_database_connection_and_is_released_on_stop(
        db, connected, fake, servers, encryptor):
    config = servers.config(shopify={"api_base": fake.base_url, "request_timeout": 60.0, "requests_per_second": 1000.0})
    fake.fail_always("hang")
    before = len(fake.requests)
    stop = asyncio.Event()
    task = asyncio.create_task(run_shopify_sync(config, db, stop, encryptor=encryptor, tick=0.05))
    try:
        async def in_flight():
            return len(fake.requests) > before

        await wait_for(in_flight, "the hanging request")
        # While Shopify hangs: no pooled connection is held by the sync (the scheduler may take
        # one for a moment to look for due work), and other work runs.
        async def all_idle():
            return db.get_idle_size() == db.get_size()

        await wait_for(all_idle, "every pooled connection idle while the request hangs")
        assert len(fake.requests) > before and not task.done()
        async with scoped(db, org_id=connected) as conn:
            assert await conn.fetchval("SELECT status FROM shopify_connections WHERE org_id = $1", connected) == "syncing"
    finally:
        stop.set()
        await task
    # Cancelled by the shutdown: handed back for the next worker, not counted as a failure.
    shown = await connections.status(db, connected)
    assert (shown["status"], shown["consecutive_failures"]) == ("active", 0)


async def test_two_runners_never_sync_one_connection_twice(db, connected, shopify_config, encryptor, fake):
    stop = asyncio.Event()
    tasks = [asyncio.create_task(run_shopify_sync(shopify_config, db, stop, encryptor=encryptor, tick=0.05))
             for _ in range(2)]

    async def synced():
        return (await connections.status(db, connected))["last_sync_at"] is not None

    try:
        await wait_for(synced, "the first sync")
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    checks = [r for r in fake.requests if r.operation == "ConvotConnectionCheck"]
    first_pages = [r for r in fake.requests if r.operation == "ConvotTransactions" and r.variables["after"] is None]
    assert len(checks) == 1 and len(first_pages) == 1
