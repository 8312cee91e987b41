"""The revenue pages of the inbox, in a real browser against the real services: the revenue
dashboard (figures exactly as the API gives them, the MRR chart, per app and per period), who
may see it, the owner's Shopify connection against the fake Partner API, and billing: the
plan, Stripe Checkout through the fake Stripe API, and the past-due banner every member sees."""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest

from tests.fakes.shopify_partner import FakePartnerApi
from tests.fakes.stripe_api import FakeStripe
from tests.inbox.support import new_organisation, save_screenshot, sign_in
from tests.inbox.test_core import core  # noqa: F401  (the fixture: pure modules in Chromium, no server)

pytestmark = pytest.mark.browser

APP_A, APP_B = "gid://partners/App/7001", "gid://partners/App/7002"


class FakeInThread:
    """A fake third-party API on its own event loop in a thread: the services may call it at any
    time (the engine worker's sync loop), also between tests, when the test loop is idle."""

    def __init__(self, build) -> None:
        self.build = build                       # async () -> (fake, async close())
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.close = None

    def start(self):
        self.thread.start()
        fake, self.close = asyncio.run_coroutine_threadsafe(self.build(), self.loop).result(10)
        return fake

    def stop(self) -> None:
        if self.close is not None:
            asyncio.run_coroutine_threadsafe(self.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def _partner():
    api = FakePartnerApi()
    app = api.add_app("Reviews Pro")
    api.add_transaction("AppSubscriptionSale", app, "alpha.myshopify.com", datetime.now(timezone.utc) - timedelta(days=3), "29.00")
    await api.start()
    return api, api.close


async def _stripe():
    fake = FakeStripe()
    await fake.__aenter__()
    return fake, fake.__aexit__


@pytest.fixture(scope="module")
def partner():
    fake = FakeInThread(_partner)
    yield fake.start()
    fake.stop()


@pytest.fixture(scope="module")
def stripe_fake():
    fake = FakeInThread(_stripe)
    yield fake.start()
    fake.stop()


@pytest.fixture(scope="module")
def stack_extra(partner, stripe_fake):
    # A short poll (the worker's loop ticks at min(5 s, poll_interval)) and retry: twelve failed
    # runs in a row happen within seconds.
    return {"shopify": {"api_base": partner.base_url, "requests_per_second": 1000.0, "poll_interval": 2.0,
                        "retry_base": 0.05, "request_timeout": 5.0},
            "billing": {"stripe_api_base": stripe_fake.base_url, "stripe_secret_key": stripe_fake.secret_key,
                        "price_ids": "team=price_1Team,business=price_1Biz"}}


def _at(days_ago: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def seed_revenue(owner_db, org_id: str) -> None:
    """Two Shopify apps and four merchants with the timelines the sync writes."""
    org = uuid.UUID(org_id)
    merchants = [
        ("alpha.myshopify.com", APP_A, "active", "30.0000", [[_at(40), "active", "30.0000", "USD"]]),
        ("bravo.myshopify.com", APP_A, "active", "50.0000", [[_at(10), "trialing", "0", "USD"], [_at(3), "active", "50.0000", "USD"]]),
        ("charlie.myshopify.com", APP_B, "churned", "0", [[_at(60), "active", "20.0000", "USD"], [_at(5), "churned", "0", "USD"]]),
        ("delta.myshopify.com", APP_B, "trialing", "0", [[_at(2), "trialing", "0", "USD"]]),
    ]
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", org_id)
        await owner_db.execute("INSERT INTO shopify_apps (org_id, app_gid, name) VALUES ($1, $2, 'Reviews Pro'), ($1, $3, 'Upsell Kit')",
                               org, APP_A, APP_B)
        for shop, app, status, mrr, timeline in merchants:
            await owner_db.execute(
                "INSERT INTO shopify_merchants (org_id, shop_domain, app_gid, status, mrr_amount, currency, timeline) "
                "VALUES ($1, $2, $3, $4, $5::numeric, 'USD', $6::text::jsonb)",
                org, shop, app, status, mrr, orjson.dumps(timeline).decode())


async def card_values(page) -> dict[str, str]:
    return await page.eval_on_selector_all(
        ".revenue-card", "els => Object.fromEntries(els.map(e => [e.dataset.metric, e.dataset.value]))")


async def test_the_pure_helpers_pick_scope_and_range_and_scale_the_chart(core):
    data = {"overall": {"30d": {"series": [{"at": "2026-01-01T00:00:00Z", "mrr": {"USD": "12.5000"}},
                                           {"at": "2026-01-02T00:00:00Z", "mrr": {"EUR": "3.0000"}},
                                           {"at": "2026-01-03T00:00:00Z", "mrr": {"USD": "80.0000"}}]}},
            "apps": {APP_A: {"7d": {"series": []}}}}
    result = await core("views/revenue", """
        const p = m.chartPoints(m.metricsFor(arg, "overall", "30d"), "USD");
        const chart = m.mrrChart(m.metricsFor(arg, "overall", "30d"), "USD", false);
        const empty = m.mrrChart(m.metricsFor(arg, arg.app, "7d"), "USD", false);
        return [p.points.map((x) => x.value), p.top, m.chartPoints({series: [{at: "x", mrr: {USD: "0"}}]}, "USD").top,
                m.chartPoints({series: [{at: "x", mrr: {USD: "201"}}]}, "USD").top,
                m.metricsFor(arg, arg.app, "30d"), m.metricsFor(arg, "gid://partners/App/1", "7d"),
                m.money("960.0000", "USD"), m.money("24.9167", "EUR"),
                chart.querySelector("svg").getAttribute("aria-label"), [...chart.querySelectorAll(".chart-y")].map((e) => e.textContent),
                [...chart.querySelectorAll(".chart-x")].map((e) => e.textContent), chart.querySelectorAll("tbody tr").length,
                empty.querySelector("svg").getAttribute("aria-label"), empty.querySelectorAll("path").length];
    """, {**data, "app": APP_A})
    assert result == [
        [12.5, 0, 80], 100, 1, 250, None, None, "US$960.00", "€24.92",
        "MRR in USD from US$12.50 on 1 Jan 2026 to US$80.00 on 3 Jan 2026, highest US$80.00",
        ["US$0.00", "US$50.00", "US$100.00"], ["1 Jan 2026", "3 Jan 2026"], 3,
        "No MRR data in this range", 0]


async def test_dashboard_shows_the_api_figures_with_a_chart_per_app_and_period(stack, browsers, owner_db):
    org = await new_organisation(stack, owner_db, name="Revenue Co")      # a fixed name: a stable screenshot
    await seed_revenue(owner_db, org["org_id"])
    ctx = await browsers.new()
    page = await sign_in(ctx, stack, org["owner"]["email"], org["owner"]["password"], path="/app/settings/revenue")
    await page.get_by_role("heading", name="Revenue").wait_for()
    await page.wait_for_selector(".revenue-card[data-metric=mrr]")
    api = await (await page.request.get(f"{stack.api}/v1/orgs/{org['org_id']}/revenue")).json()

    # Default: all apps, last 30 days — every card carries the API's exact figure.
    month = api["overall"]["30d"]
    usd = month["currencies"]["USD"]
    assert usd["mrr"] == "80.0000" and usd["new_mrr"] == "50.0000" and usd["churned_mrr"] == "20.0000"
    values = await card_values(page)
    assert values == {"active_merchants": str(month["active_merchants"]), "mrr": usd["mrr"], "arr": usd["arr"],
                      "new_mrr": usd["new_mrr"], "churned_mrr": usd["churned_mrr"], "arpu": usd["arpu"]}
    assert month["active_merchants"] == 3
    assert await page.locator(".revenue-card[data-metric=mrr] .revenue-card-value").text_content() == "US$80.00"
    assert await page.locator(".revenue-card[data-metric=arr] .revenue-card-value").text_content() == "US$960.00"

    # The chart: one point per day of the range, labelled axes, an accessible summary and table.
    chart = page.locator("svg.revenue-chart")
    assert int(await chart.get_attribute("data-points")) == len(month["series"])
    label = await chart.get_attribute("aria-label")
    assert label.startswith("MRR in USD from US$") and "to US$80.00" in label
    assert await page.locator("svg.revenue-chart path.chart-line").count() == 1
    assert "US$100.00" in await page.locator("svg.revenue-chart .chart-y").all_text_contents()
    assert await page.locator("figure.revenue-figure table tbody tr").count() == len(month["series"])
    save_screenshot("inbox-revenue.png", await page.screenshot())

    # One app, twelve months: the figures switch to that app's.
    await page.get_by_label("App").select_option(label="Upsell Kit")
    await page.get_by_label("Period").select_option("12m")
    year = api["apps"][APP_B]["12m"]
    await page.wait_for_function("(v) => document.querySelector('.revenue-card[data-metric=churned_mrr]').dataset.value === v",
                                 arg=year["currencies"]["USD"]["churned_mrr"])
    values = await card_values(page)
    assert values["mrr"] == year["currencies"]["USD"]["mrr"] and Decimal(values["mrr"]) == 0
    assert values["churned_mrr"] == "20.0000"
    assert values["active_merchants"] == str(year["active_merchants"]) == "1"
    assert int(await chart.get_attribute("data-points")) == len(year["series"])

    # Yesterday: hourly points.
    await page.get_by_label("App").select_option("overall")
    await page.get_by_label("Period").select_option("yesterday")
    await page.wait_for_function("(n) => document.querySelector('svg.revenue-chart').dataset.points === String(n)",
                                 arg=len(api["overall"]["yesterday"]["series"]))


async def test_an_agent_without_revenue_does_not_see_the_page(stack, browsers, owner_db):
    org = await new_organisation(stack, owner_db, name=f"Quiet {uuid.uuid4().hex[:6]}")
    await seed_revenue(owner_db, org["org_id"])
    ctx = await browsers.new()
    page = await sign_in(ctx, stack, org["agent"]["email"], org["agent"]["password"], path="/app/settings/revenue")
    await page.get_by_role("heading", name="Team").wait_for()        # falls back to a section they may use
    nav = await page.locator(".settings-nav a").all_text_contents()
    assert "Revenue" not in nav and "Shopify" not in nav and "Team" in nav
    assert await page.locator(".revenue-card").count() == 0
    answer = await page.request.get(f"{stack.api}/v1/orgs/{org['org_id']}/revenue")
    assert answer.status == 403


async def test_owner_connects_shopify_sees_the_masked_token_syncs_and_disconnects(stack, browsers, owner_db, partner):
    org = await new_organisation(stack, owner_db, name=f"Shop {uuid.uuid4().hex[:6]}")
    ctx = await browsers.new()
    page = await sign_in(ctx, stack, org["owner"]["email"], org["owner"]["password"], path="/app/settings/shopify")
    await page.get_by_role("heading", name="Shopify").wait_for()

    # A wrong token is refused by the real query against the fake; nothing is stored.
    await page.get_by_label("Partner organisation id").fill(partner.partner_org_id)
    await page.get_by_label("Partner API token").fill("prtapi_wrongwrongwrong")
    await page.get_by_role("button", name="Connect", exact=True).click()
    await page.locator(".alert-error[role=alert]").wait_for()
    assert await page.get_by_label("Partner API token").input_value() == ""
    assert (await (await page.request.get(f"{stack.api}/v1/orgs/{org['org_id']}/shopify")).json())["connected"] is False

    await page.get_by_label("Partner organisation id").fill(partner.partner_org_id)
    await page.get_by_label("Partner API token").fill(partner.token)
    await page.get_by_role("button", name="Connect", exact=True).click()
    token = page.locator("code.shopify-token")
    await token.wait_for()
    assert await token.text_content() == "••••••••" + partner.token[-4:]
    assert partner.token not in await page.content()
    assert await page.locator(".shopify-status dd", has_text=partner.partner_org_id).count() == 1

    # Sync now; the engine worker runs it against the fake and the result shows on reload.
    await page.get_by_role("button", name="Sync now").click()
    for _ in range(300):
        status = await (await page.request.get(f"{stack.api}/v1/orgs/{org['org_id']}/shopify")).json()
        if status["last_result"] and status["status"] == "active":
            break
        await asyncio.sleep(0.2)
    assert status["last_result"]["ok"] is True, status
    await page.reload()
    await page.locator(".shopify-status dt", has_text="Last result").wait_for()
    assert re.search(r"\d+ new transactions, \d+ new events, \d+ merchants updated, 1 apps",
                     await page.locator(".shopify-status").text_content())
    assert await page.locator(".shopify-status dd", has_text="Not yet").count() == 0       # last sync shown
    assert await page.locator(".shopify-status [data-status=active]").count() == 1

    # Disconnect deletes the token: the form is back.
    await page.get_by_role("button", name="Disconnect").click()
    await page.get_by_role("dialog").get_by_role("button", name="Disconnect").click()
    await page.get_by_role("button", name="Connect", exact=True).wait_for()
    assert (await (await page.request.get(f"{stack.api}/v1/orgs/{org['org_id']}/shopify")).json())["connected"] is False


async def wait_status(page, stack, org_id: str, done, tries: int = 300) -> dict:
    for _ in range(tries):
        status = await (await page.request.get(f"{stack.api}/v1/orgs/{org_id}/shopify")).json()
        if done(status):
            return status
        await asyncio.sleep(0.2)
    raise AssertionError(f"connection never reached the state: {status}")


async def test_after_twelve_failures_the_connection_stops_and_shows_the_error_until_sync_now(stack, browsers, owner_db, partner):
    org = await new_organisation(stack, owner_db, name=f"Stop {uuid.uuid4().hex[:6]}")
    ctx = await browsers.new()
    page = await sign_in(ctx, stack, org["owner"]["email"], org["owner"]["password"], path="/app/settings/shopify")
    await page.get_by_label("Partner organisation id").fill(partner.partner_org_id)
    await page.get_by_label("Partner API token").fill(partner.token)
    await page.get_by_role("button", name="Connect", exact=True).click()
    await page.locator("code.shopify-token").wait_for()
    try:
        partner.fail_always("error_page")                     # Shopify answers 500 pages from now on
        status = await wait_status(page, stack, org["org_id"], lambda s: s["status"] == "stopped")
        assert status["consecutive_failures"] == 12 and status["last_error"].startswith("shopify_unavailable")
        await page.reload()
        alert = page.locator("[data-testid=shopify-error]")
        await alert.wait_for()
        text = await alert.text_content()
        assert "Syncing stopped after 12 failures in a row" in text and "shopify_unavailable" in text
        assert await page.locator(".shopify-status [data-status=stopped]").count() == 1
        assert await page.locator(".shopify-status dd", has_text="Only after Sync now").count() == 1
    finally:
        partner.fail_always(None)

    await page.get_by_role("button", name="Sync now").click()
    await wait_status(page, stack, org["org_id"], lambda s: s["status"] == "active" and s["consecutive_failures"] == 0
                      and s["last_error"] is None and (s["last_result"] or {}).get("ok"))
    await page.reload()
    await page.locator(".shopify-status [data-status=active]").wait_for()
    assert await page.locator("[data-testid=shopify-error]").count() == 0
    await page.get_by_role("button", name="Disconnect").click()
    await page.get_by_role("dialog").get_by_role("button", name="Disconnect").click()
    await page.get_by_role("button", name="Connect", exact=True).wait_for()


async def set_billing(owner_db, org_id: str, status: str, plan: str) -> None:
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", org_id)
        await owner_db.execute(
            "INSERT INTO billing_accounts (org_id, stripe_customer_id, stripe_subscription_id, plan, status) "
            "VALUES ($1, $2, $3, $4, $5)", uuid.UUID(org_id), "cus_" + uuid.uuid4().hex[:14], "sub_" + uuid.uuid4().hex[:14],
            plan, status)


async def test_billing_page_shows_the_plan_and_starts_checkout(stack, browsers, owner_db, stripe_fake):
    org = await new_organisation(stack, owner_db, name=f"Bill {uuid.uuid4().hex[:6]}")
    ctx = await browsers.new()
    # Stripe's hosted pages are outside the test network: answer them here.
    await ctx.route("https://checkout.stripe.com/**", lambda route: route.fulfill(status=200, content_type="text/html",
                                                                                 body="<title>Stripe Checkout</title>"))
    page = await sign_in(ctx, stack, org["owner"]["email"], org["owner"]["password"], path="/app/settings/billing")
    await page.get_by_role("heading", name="Billing").wait_for()
    assert await page.locator("[data-testid=billing-plan]").text_content() == "Free"
    assert await page.locator("dd[data-status]").get_attribute("data-status") == "none"
    assert await page.locator("tr[data-plan=free]").get_by_text("Current plan").count() == 1
    assert "US$49.00 / month" in await page.locator("tr[data-plan=team]").text_content()
    assert await page.locator(".banner").is_hidden()           # no billing banner for a free organisation

    # The portal before any Checkout: the API's refusal is shown, nothing else happens.
    await page.get_by_role("button", name="Manage billing").click()
    await page.locator(".section .alert-error[role=alert]").wait_for()

    async with page.expect_navigation(url="https://checkout.stripe.com/**"):
        await page.get_by_role("button", name="Choose Team").click()
    session = next(iter(stripe_fake.checkout_sessions.values()))
    assert page.url == session["url"].split("#")[0] or page.url == session["url"]
    assert session["metadata"]["org_id"] == org["org_id"]
    assert session["success_url"].startswith(stack.api + "/app/")
    # The click's own Idempotency-Key reached Stripe (convot-checkout-<org>-<plan>-<key>).
    keys = [key for path, _params, key in stripe_fake.requests if path == "/v1/checkout/sessions"]
    assert len(keys) == 1 and re.fullmatch(f"convot-checkout-{org['org_id']}-team-click-[0-9a-f]{{24}}", keys[0]), keys


async def test_a_past_due_organisation_keeps_chatting_and_every_member_sees_the_banner(stack, browsers, owner_db):
    org = await new_organisation(stack, owner_db, name=f"Late {uuid.uuid4().hex[:6]}")
    await set_billing(owner_db, org["org_id"], "past_due", "team")
    owner_ctx, agent_ctx = await browsers.new(), await browsers.new()
    owner = await sign_in(owner_ctx, stack, org["owner"]["email"], org["owner"]["password"], path="/app/settings/billing")
    banner = owner.locator(".banner")
    await banner.wait_for()
    assert "The last payment failed. Chat keeps working" in await banner.text_content()
    await owner.get_by_role("heading", name="Billing").wait_for()
    assert await owner.locator("dd[data-status]").text_content() == "Payment failed"
    assert await owner.locator("[data-testid=billing-plan]").text_content() == "Team"
    assert await owner.locator(".section .alert-error", has_text="The last payment failed").count() == 1

    # An agent has no billing page but sees the banner over a working inbox.
    agent = await sign_in(agent_ctx, stack, org["agent"]["email"], org["agent"]["password"])
    await agent.locator(".banner", has_text="The last payment failed").wait_for()
    assert (await agent.request.get(f"{stack.api}/v1/orgs/{org['org_id']}/billing")).status == 403
    await agent.goto(stack.api + "/app/settings")
    await agent.get_by_role("heading", name="Team").wait_for()
    assert "Billing" not in await agent.locator(".settings-nav").text_content()
    assert await agent.locator("html[data-connection=ready]").count() == 1

    # Paid again: the banner is gone at the next load.
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", org["org_id"])
        await owner_db.execute("UPDATE billing_accounts SET status = 'active' WHERE org_id = $1", uuid.UUID(org["org_id"]))
    await agent.reload()
    await agent.wait_for_selector("html[data-connection=ready]", state="attached")
    await agent.get_by_role("heading", name="Team").wait_for()
    assert await agent.locator(".banner").is_hidden()
