"""Full and incremental sync against the fake Partner API, persisted in the real PostgreSQL."""

from datetime import timedelta
from decimal import Decimal

import pytest

from convot.db import scoped
from engine.shopify import connections
from engine.shopify.records import format_time, parse_time
from engine.shopify.revenue import revenue_dashboard
from engine.shopify.runner import sync_one
from tests.engine.shopify import partner_dataset as ds


async def merchants(db, org):
    async with scoped(db, org_id=org) as conn:
        rows = await conn.fetch("SELECT * FROM shopify_merchants WHERE org_id = $1 ORDER BY shop_domain, app_gid", org)
    return {(r["shop_domain"], r["app_gid"]): dict(r) for r in rows}


async def counts(db, org):
    async with scoped(db, org_id=org) as conn:
        return (await conn.fetchval("SELECT count(*) FROM shopify_transactions WHERE org_id = $1", org),
                await conn.fetchval("SELECT count(*) FROM shopify_events WHERE org_id = $1", org),
                await conn.fetchval("SELECT count(*) FROM shopify_apps WHERE org_id = $1", org))


def assert_merchants(rows, expected):
    assert set(rows) == set(expected)
    for key, want in expected.items():
        row = rows[key]
        got = (row["status"], row["plan"], row["mrr_amount"], row["lifetime_gross"], row["billing_interval"], row["currency"])
        assert got == (want.status, want.plan, Decimal(want.mrr), Decimal(want.lifetime), want.interval, "USD"), key


async def run(db, settings, session, encryptor, org):
    await connections.request_sync_now(db, org)
    return await sync_one(db, settings, session, encryptor, org, now=lambda: ds.NOW)


@pytest.fixture
async def connected(db, org, fake, settings, session, encryptor):
    ds.build(fake)
    shown = await connections.connect(db, encryptor, session, settings, org_id=org,
                                      partner_org_id=fake.partner_org_id, token=fake.token)
    assert shown["token"].endswith(fake.token[-4:]) and fake.token not in str(shown)
    return org


async def test_full_sync_survives_throttling_and_an_error_page_then_matches_hand_computed_values(
        db, connected, fake, settings, session, encryptor):
    org = connected
    fake.fail_on_request(1, "throttled")     # the first page is throttled: retried in the same run
    fake.fail_on_request(4, "error_page")    # the third page is a 500 page: the run fails

    first = await sync_one(db, settings, session, encryptor, org, now=lambda: ds.NOW)
    assert first.claimed and first.status == "active" and first.error.startswith("shopify_unavailable: HTTP 500")
    shown = await connections.status(db, org)
    assert shown["consecutive_failures"] == 1 and shown["last_error"].startswith("shopify_unavailable")
    assert shown["last_result"]["ok"] is False
    assert (await counts(db, org))[0] == 6     # two pages of 3 were committed before the error

    before = len(fake.requests)
    second = await run(db, settings, session, encryptor, org)
    assert second.error is None and second.status == "active"
    resumed = fake.requests[before]
    assert resumed.operation == "ConvotTransactions" and resumed.variables["after"] is not None

    rows = await merchants(db, org)
    assert_merchants(rows, ds.EXPECTED)
    alpha = rows[("alpha.myshopify.com", ds.REVIEWS)]
    assert alpha["installed_at"] == ds.D(200) and alpha["uninstalled_at"] is None
    gamma = rows[("gamma.myshopify.com", ds.REVIEWS)]
    assert gamma["trial_ends_at"] == ds.D(-9)
    delta = rows[("delta.myshopify.com", ds.REVIEWS)]
    assert delta["uninstalled_at"] == ds.D(20 / 24)

    # 3 apps discovered from the transactions; every transaction copied once.
    n_tx, n_ev, n_apps = await counts(db, org)
    assert n_tx == len(fake.transactions) and n_apps == 3
    # Events older than the 365-day retention were folded into epsilon's baseline and deleted.
    all_events = sum(len(v) for v in fake.events.values())
    assert n_ev == all_events - 2
    epsilon = rows[("epsilon.myshopify.com", ds.UPSELL)]
    assert epsilon["baseline"]["installed"] and epsilon["baseline"]["charge_id"].endswith("/e1")
    assert epsilon["baseline_until"] == ds.NOW - timedelta(days=365)

    # The uninstall of 20 hours ago is reported for a churn notice; eta's (3 days ago) is not.
    assert [(u.shop_domain, u.app_gid, u.app_name) for u in second.outcome.recent_uninstalls] == \
        [("delta.myshopify.com", ds.REVIEWS, "Reviews Pro")]
    assert second.outcome.throttled == 0 and first.outcome is None

    shown = await connections.status(db, org)
    assert shown["consecutive_failures"] == 0 and shown["last_error"] is None
    assert shown["last_result"]["ok"] and shown["last_result"]["new_transactions"] == len(fake.transactions) - 6
    assert shown["progress"]["running"] is False
    assert {a["name"] for a in shown["apps"]} == {"Reviews Pro", "Upsell Wizard", "Bundle Kit"}

    board = await revenue_dashboard(db, org, ds.NOW)
    usd = board["overall"]["30d"]["currencies"]["USD"]
    assert Decimal(usd["mrr"]) == ds.EXPECTED_MRR and Decimal(usd["arr"]) == ds.EXPECTED_ARR
    assert Decimal(usd["arpu"]) == ds.EXPECTED_ARPU and usd["paying_merchants"] == 4
    assert board["overall"]["30d"]["active_merchants"] == ds.EXPECTED_ACTIVE
    # In the last 30 days: beta froze (9.99 churned), delta left (29.00 churned); nothing new.
    assert Decimal(usd["churned_mrr"]) == Decimal("38.99") and Decimal(usd["new_mrr"]) == 0
    bundles = board["apps"][ds.BUNDLES]["12m"]["currencies"]["USD"]
    assert Decimal(bundles["mrr"]) == Decimal("29.0000") and Decimal(bundles["new_mrr"]) == Decimal("29.0000")
    assert board["app_names"][ds.BUNDLES] == "Bundle Kit"


async def test_second_sync_changes_nothing_and_incremental_sync_uses_the_overlap(
        db, connected, fake, settings, session, encryptor):
    org = connected
    assert (await run(db, settings, session, encryptor, org)).error is None
    rows_before, counts_before = await merchants(db, org), await counts(db, org)
    state = (await connections.status(db, org))

    before = len(fake.requests)
    again = await run(db, settings, session, encryptor, org)
    assert again.error is None
    assert (again.outcome.new_transactions, again.outcome.new_events, again.outcome.merchants_updated) == (0, 0, 0)
    assert await merchants(db, org) == rows_before        # updated_at included: no row was rewritten
    assert await counts(db, org) == counts_before
    tx_request = fake.requests[before]
    # Incremental from the newest transaction seen (zeta's sale 10 days ago) minus the 1-hour overlap.
    assert parse_time(tx_request.variables["createdAtMin"], "t") == ds.D(10) - timedelta(hours=1)
    assert state["last_result"]["ok"]

    ds.add_incremental(fake, late_at=ds.D(10) - timedelta(minutes=30))
    inc = await run(db, settings, session, encryptor, org)
    assert inc.error is None
    assert inc.outcome.new_transactions == 3 and inc.outcome.new_events == 5
    assert_merchants(await merchants(db, org), ds.EXPECTED_AFTER_INCREMENTAL)

    board = await revenue_dashboard(db, org, ds.NOW)
    usd = board["overall"]["7d"]["currencies"]["USD"]
    # new: iota 24.9167; reactivation: beta 9.99 (paid before); expansion: alpha 29 -> 49 = 20;
    # churned: delta 29.00.  MRR 92.9167 + 24.9167 + 9.99 + 20 = 147.8234
    assert Decimal(usd["new_mrr"]) == Decimal("24.9167")
    assert Decimal(usd["reactivation_mrr"]) == Decimal("9.99")
    assert Decimal(usd["expansion_mrr"]) == Decimal("20")
    assert Decimal(usd["churned_mrr"]) == Decimal("29")
    assert Decimal(usd["mrr"]) == Decimal("147.8234")
    assert Decimal(usd["arr"]) == Decimal("147.8234") * 12


async def test_connection_check_refuses_a_wrong_token_and_stores_nothing(db, org, fake, settings, session, encryptor):
    from engine.shopify.errors import Unauthorized

    with pytest.raises(Unauthorized):
        await connections.connect(db, encryptor, session, settings, org_id=org, partner_org_id=fake.partner_org_id,
                                  token="prtapi_not_the_token")
    assert await connections.status(db, org) is None


@pytest.mark.parametrize("org_id_value,token,code", [
    ("abc", "prtapi_0123456789", "invalid_partner_org_id"),
    ("", "prtapi_0123456789", "invalid_partner_org_id"),
    ("123", "short", "invalid_token"),
    ("123", "has a space inside", "invalid_token"),
    ("123", None, "invalid_token"),
])
async def test_connect_input_is_validated_before_any_request(db, org, fake, settings, session, encryptor,
                                                             org_id_value, token, code):
    with pytest.raises(connections.ConnectionInputError) as info:
        await connections.connect(db, encryptor, session, settings, org_id=org, partner_org_id=org_id_value, token=token)
    assert info.value.code == code and fake.requests == []


async def test_token_is_encrypted_and_bound_to_its_organisation(db, owner_db, connected, fake, encryptor):
    from convot.crypto import CryptoError

    from tests.engine.shopify.conftest import make_org

    org = connected
    async with scoped(db, org_id=org) as conn:
        blob = bytes(await conn.fetchval("SELECT token_enc FROM shopify_connections WHERE org_id = $1", org))
    assert fake.token.encode() not in blob
    assert encryptor.decrypt(blob, connections.token_aad(org)).decode() == fake.token
    other = await make_org(owner_db, "Other")
    with pytest.raises(CryptoError):
        encryptor.decrypt(blob, connections.token_aad(other))


async def test_twelve_consecutive_failures_stop_the_connection_until_sync_now(
        db, connected, fake, settings, session, encryptor):
    org = connected
    fake.fail_always("error_page")
    for n in range(1, 12):
        report = await run(db, settings, session, encryptor, org)
        assert (report.status, (await connections.status(db, org))["consecutive_failures"]) == ("active", n)
    report = await run(db, settings, session, encryptor, org)
    assert report.status == "stopped"
    shown = await connections.status(db, org)
    assert shown["status"] == "stopped" and shown["last_error"] == "shopify_unavailable: HTTP 500"
    assert shown["next_sync_at"] is None
    # A stopped connection is never due, whatever the time.
    assert org not in await connections.due_connections(db, 100, 300)
    assert not (await sync_one(db, settings, session, encryptor, org)).claimed

    fake.fail_always(None)
    assert await connections.request_sync_now(db, org)
    shown = await connections.status(db, org)
    assert (shown["status"], shown["consecutive_failures"], shown["last_error"]) == ("active", 0, None)
    assert org in await connections.due_connections(db, 100, 300)
    report = await sync_one(db, settings, session, encryptor, org, now=lambda: ds.NOW)
    assert report.error is None and report.status == "active"


async def test_failed_runs_back_off(settings):
    delays = [connections.retry_delay(n, settings) for n in range(1, 14)]
    assert delays[:3] == [1.0, 2.0, 4.0]
    assert max(delays) == settings.poll_interval and delays == sorted(delays)


async def test_unauthorized_token_counts_as_a_failure_with_its_code(db, connected, fake, settings, session, encryptor):
    fake.token = "prtapi_rotated_elsewhere"
    report = await run(db, settings, session, encryptor, connected)
    assert report.error.startswith("shopify_unauthorized") and report.status == "active"


async def test_disconnect_deletes_the_token(db, connected):
    assert await connections.disconnect(db, connected)
    assert await connections.status(db, connected) is None
    assert not await connections.disconnect(db, connected)


async def test_another_organisation_sees_none_of_it(db, owner_db, connected, settings, session, encryptor):
    from tests.engine.shopify.conftest import make_org

    assert (await run(db, settings, session, encryptor, connected)).error is None
    other = await make_org(owner_db, "Other")
    assert await connections.status(db, other) is None
    assert await merchants(db, other) == {}
    board = await revenue_dashboard(db, other, ds.NOW)
    assert board["overall"]["30d"]["currencies"] == {} and board["apps"] == {}


async def test_sync_state_is_json_with_times_in_api_format(db, connected, settings, session, encryptor):
    assert (await run(db, settings, session, encryptor, connected)).error is None
    async with scoped(db, org_id=connected) as conn:
        state = await conn.fetchval("SELECT sync_state FROM shopify_connections WHERE org_id = $1", connected)
    feeds = state["feeds"]
    assert set(feeds) == {"transactions", f"events:{ds.REVIEWS}", f"events:{ds.UPSELL}", f"events:{ds.BUNDLES}"}
    assert all(f["pending"] is None for f in feeds.values())
    assert feeds["transactions"]["since"] == format_time(ds.D(10))
