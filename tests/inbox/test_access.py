"""Who sees what in the inbox: identity verification in the sidebar, the merchant panel only
with the Revenue permission, and a member removed by an admin losing the open inbox at once."""

from __future__ import annotations

import uuid

import pytest

from tests.inbox.support import (add_member, demo_identity_secret, hmac_hex, open_conversation_of, open_demo_shop,
                                 save_screenshot, sign_in, widget_send)

pytestmark = pytest.mark.browser


async def seed_merchant(stack, owner_db, shop: str) -> None:
    org_id = uuid.UUID(stack.demo["org_id"])
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", str(org_id))
        await owner_db.execute("INSERT INTO shopify_apps (org_id, app_gid, name) VALUES ($1, 'gid://partners/App/77', "
                               "'Reviews Pro') ON CONFLICT DO NOTHING", org_id)
        await owner_db.execute(
            """INSERT INTO shopify_merchants (org_id, shop_domain, app_gid, plan, status, mrr_amount, currency, lifetime_gross)
               VALUES ($1, $2, 'gid://partners/App/77', 'Pro', 'active', 49.0000, 'USD', 588.0000)""", org_id, shop)


async def identify(page, **fields) -> None:
    """Convot.identify(...) on the shop page, once the widget's new session is answered."""
    async with page.expect_response(lambda r: r.url.endswith("/v1/widget/session") and r.request.method == "POST"):
        await page.evaluate("(fields) => window.Convot.identify(fields)", fields)


async def test_verified_and_forged_identities_and_the_merchant_panel_by_permission(stack, browsers, owner_db):
    secret = await demo_identity_secret(stack, owner_db)
    tag = uuid.uuid4().hex[:6]
    shop_domain = f"vera-{tag}.myshopify.com"
    await seed_merchant(stack, owner_db, shop_domain)

    # A shopper identified by the app's server (valid hashes) and one with forged hashes.
    verified_ctx, forged_ctx = await browsers.new(), await browsers.new()
    vpage, vwidget = await open_demo_shop(verified_ctx, stack)
    await identify(vpage, external_id=f"vera-{tag}", email=f"vera-{tag}@example.com", name=f"Vera {tag}",
                   custom_data={"plan": "pro", "seats": 12}, shop=shop_domain,
                   user_hash=hmac_hex(secret, f"vera-{tag}"), shop_hash=hmac_hex(secret, shop_domain))
    await widget_send(vwidget, f"Verified question {tag}")
    fpage, fwidget = await open_demo_shop(forged_ctx, stack)
    await identify(fpage, external_id=f"fred-{tag}", name=f"Fred {tag}", shop=f"fred-{tag}.myshopify.com",
                   user_hash="0" * 64, shop_hash="f" * 64)
    await widget_send(fwidget, f"Forged question {tag}")

    owner_ctx, agent_ctx = await browsers.new(), await browsers.new()
    owner = await sign_in(owner_ctx, stack, stack.demo["owner"], stack.demo["owner_pw"])
    agent = await sign_in(agent_ctx, stack, stack.demo["agent"], stack.demo["agent_pw"])

    # The owner: Vera is verified and her merchant panel shows the plan, MRR and lifetime value.
    await owner.locator(".conv", has_text=f"Vera {tag}").wait_for()
    await open_conversation_of(owner, f"Vera {tag}")
    await owner.locator(".side-card .badge-verified", has_text="Verified").wait_for()
    panel = owner.locator("#merchant-panel")
    await panel.wait_for(state="visible")
    text = await panel.inner_text()
    assert shop_domain in text and "Reviews Pro" in text and "Pro" in text
    assert "$49.00" in text and "$588.00" in text
    facts = await owner.inner_text(".side-card dl.custom")
    assert "plan" in facts and "pro" in facts and "seats" in facts
    save_screenshot("inbox-sidebar-verified.png", await owner.screenshot())

    # Fred's hashes are forged: unverified, and no merchant data for his shop.
    await open_conversation_of(owner, f"Fred {tag}")
    await owner.locator(".side-card .badge-unverified", has_text="Unverified").wait_for()
    assert await owner.locator(".side-card .badge-verified").count() == 0
    await owner.wait_for_function("() => document.querySelector('#merchant-panel') && document.querySelector('#merchant-panel').hidden")

    # The agent (no Revenue permission): Vera is verified for them too, but there is no merchant panel.
    await agent.locator(".conv", has_text=f"Vera {tag}").wait_for()
    await open_conversation_of(agent, f"Vera {tag}")
    await agent.locator(".side-card .badge-verified").wait_for()
    assert await agent.locator("#merchant-panel").count() == 0
    side = await agent.inner_text(".side-pane")
    assert "Reviews Pro" not in side and "$49.00" not in side and "MRR" not in side


async def test_a_member_removed_by_an_admin_loses_the_organisation_in_the_open_inbox_at_once(stack, browsers,
                                                                                             owner_db):
    _, email, password = await add_member(stack, owner_db, role="agent", name="Rita Removed")
    admin_id, admin_email, admin_password = await add_member(stack, owner_db, role="admin", name="Ada Admin")
    rita_ctx, admin_ctx = await browsers.new(), await browsers.new()
    rita = await sign_in(rita_ctx, stack, email, password)
    admin = await sign_in(admin_ctx, stack, admin_email, admin_password, path="/app/settings/team")
    await admin.locator("h2", has_text="Team").wait_for()
    row = admin.locator("tr", has_text="Rita Removed")
    await row.get_by_role("button", name="Remove Rita Removed").click()
    dialog = admin.get_by_role("dialog", name="Remove Rita Removed?")
    async with admin.expect_response(lambda r: r.request.method == "DELETE" and "/members/" in r.url) as answer:
        await dialog.get_by_role("button", name="Remove").click()
    assert (await answer.value).status == 204
    # The removed agent's open inbox leaves the organisation at once (its socket was closed with
    # 4403) and says so; she has no other organisation, so she is on the welcome page, still
    # signed in: removal from one organisation never signs anybody out of the others.
    await rita.get_by_role("heading", name="Welcome to Convot").wait_for(timeout=5000)
    assert "no longer have access to" in (await rita.inner_text(".alert")).lower()
    await row.wait_for(state="detached")
    await rita.reload()
    await rita.get_by_role("heading", name="Welcome to Convot").wait_for()
    assert "/app/login" not in rita.url
