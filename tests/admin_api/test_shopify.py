"""Shopify routes through the real admin API: connection (owners), merchant panel (Revenue), dashboard."""

import uuid
from decimal import Decimal

import aiohttp
import pytest

from admin_api import keys
from convot.db import scoped
from convot.embedded import free_port
from engine.shopify.runner import sync_one
from tests.admin_api.conftest import add_member, make_org, remember, signed_in
from tests.engine.shopify import partner_dataset as ds
from tests.fakes.shopify_partner import FakePartnerApi


@pytest.fixture(scope="module")
async def partner():
    api = FakePartnerApi()
    ds.build(api)
    remember(api.token)
    async with api:
        yield api


@pytest.fixture(scope="module")
def api_config(servers, partner):
    return servers.config(smtp={"port": free_port()}, admin_api={"trusted_proxies": "127.0.0.1/32"},
                          shopify={"api_base": partner.base_url, "page_size": 50, "requests_per_second": 1000.0})


async def owner_with_org(client_factory, app):
    owner, owner_id, _ = await signed_in(client_factory, app)
    org = await make_org(app, owner_id, "Apps Inc")
    return owner, org


async def contact(app, org, **fields) -> uuid.UUID:
    columns = ", ".join(["org_id", *fields])
    params = ", ".join(f"${i}" for i in range(1, len(fields) + 2))
    async with scoped(app[keys.DB], org_id=org) as conn:
        return await conn.fetchval(f"INSERT INTO contacts ({columns}) VALUES ({params}) RETURNING id", org, *fields.values())


async def connect_and_sync(app, owner, org, partner):
    answer = await owner.call("PUT", f"/v1/orgs/{org}/shopify",
                              {"partner_org_id": partner.partner_org_id, "token": partner.token})
    assert answer.status == 200, answer.body
    async with aiohttp.ClientSession() as session:
        report = await sync_one(app[keys.DB], app[keys.CONFIG].shopify, session, app[keys.ENCRYPTOR], org,
                                now=lambda: ds.NOW)
    assert report.error is None, report.error


async def test_owner_connects_sees_a_masked_token_and_it_is_audited(client_factory, app, partner):
    owner, org = await owner_with_org(client_factory, app)
    assert (await owner.call("GET", f"/v1/orgs/{org}/shopify")).body["connected"] is False
    answer = await owner.call("PUT", f"/v1/orgs/{org}/shopify",
                              {"partner_org_id": partner.partner_org_id, "token": partner.token})
    assert answer.status == 200
    body = answer.body
    assert body["connected"] and body["status"] == "active" and body["token"] == "••••••••" + partner.token[-4:]
    assert partner.token not in str(body)
    async with scoped(app[keys.DB], org_id=org) as conn:
        actions = [r["action"] for r in await conn.fetch("SELECT action FROM audit_log WHERE org_id = $1", org)]
    assert "shopify.connected" in actions


async def test_a_refused_token_is_a_clear_error_and_stores_nothing(client_factory, app, partner):
    owner, org = await owner_with_org(client_factory, app)
    answer = await owner.call("PUT", f"/v1/orgs/{org}/shopify", {"partner_org_id": partner.partner_org_id,
                                                                 "token": "prtapi_wrong_token_value"})
    assert (answer.status, answer.code, answer.body["error"]["details"]) == \
        (422, "shopify_connection_failed", {"cause": "shopify_unauthorized"})
    bad = await owner.call("PUT", f"/v1/orgs/{org}/shopify", {"partner_org_id": "not-a-number", "token": partner.token})
    assert (bad.status, bad.code) == (422, "unprocessable_entity")
    assert (await owner.call("GET", f"/v1/orgs/{org}/shopify")).body["connected"] is False


async def test_only_owners_manage_the_connection(client_factory, app, partner):
    owner, org = await owner_with_org(client_factory, app)
    admin, admin_id, _ = await signed_in(client_factory, app)
    await add_member(app, org, admin_id, "admin")
    for method, path, body in (("GET", "/shopify", None), ("DELETE", "/shopify", None), ("POST", "/shopify/sync", None),
                               ("PUT", "/shopify", {"partner_org_id": "1", "token": "prtapi_whatever"})):
        answer = await admin.call(method, f"/v1/orgs/{org}{path}", body)
        assert (answer.status, answer.code) == (403, "forbidden"), (method, path)


async def test_merchant_panel_needs_revenue_and_a_verified_shop(client_factory, app, partner):
    owner, org = await owner_with_org(client_factory, app)
    await connect_and_sync(app, owner, org, partner)
    verified = await contact(app, org, shop="alpha.myshopify.com", shop_verified=True)
    forged = await contact(app, org, shop="alpha.myshopify.com", shop_verified=False)

    answer = await owner.call("GET", f"/v1/orgs/{org}/contacts/{verified}/merchant")
    assert answer.status == 200 and answer.body["shop_domain"] == "alpha.myshopify.com"
    reviews = next(a for a in answer.body["apps"] if a["app_gid"] == ds.REVIEWS)
    assert (reviews["plan"], reviews["status"], reviews["currency"]) == ("Pro", "active", "USD")
    assert Decimal(reviews["mrr"]) == Decimal("29") and Decimal(reviews["lifetime_value"]) == Decimal("260")
    assert reviews["recent_events"] and reviews["app_name"] == "Reviews Pro"

    # A shop that is claimed, not proven: nothing.
    assert (await owner.call("GET", f"/v1/orgs/{org}/contacts/{forged}/merchant")).status == 404

    # An agent without Revenue: 404, as if there were nothing; with the override: the panel.
    agent, agent_id, _ = await signed_in(client_factory, app)
    await add_member(app, org, agent_id, "agent")
    hidden = await agent.call("GET", f"/v1/orgs/{org}/contacts/{verified}/merchant")
    assert (hidden.status, hidden.code) == (404, "not_found")
    trusted, trusted_id, _ = await signed_in(client_factory, app)
    await add_member(app, org, trusted_id, "agent", {"revenue": True})
    assert (await trusted.call("GET", f"/v1/orgs/{org}/contacts/{verified}/merchant")).status == 200

    # Another organisation's owner: 404.
    stranger, stranger_id, _ = await signed_in(client_factory, app)
    other = await make_org(app, stranger_id, "Other")
    assert (await stranger.call("GET", f"/v1/orgs/{org}/contacts/{verified}/merchant")).status == 404
    assert (await stranger.call("GET", f"/v1/orgs/{other}/contacts/{verified}/merchant")).status == 404


async def test_revenue_dashboard(client_factory, app, partner):
    owner, org = await owner_with_org(client_factory, app)
    await connect_and_sync(app, owner, org, partner)
    answer = await owner.call("GET", f"/v1/orgs/{org}/revenue")
    assert answer.status == 200
    usd = answer.body["overall"]["30d"]["currencies"]["USD"]
    assert Decimal(usd["mrr"]) == ds.EXPECTED_MRR and Decimal(usd["arr"]) == ds.EXPECTED_ARR
    assert answer.body["overall"]["30d"]["active_merchants"] == ds.EXPECTED_ACTIVE
    assert set(answer.body["overall"]) == {"yesterday", "7d", "30d", "90d", "12m"}
    assert answer.body["app_names"][ds.UPSELL] == "Upsell Wizard"
    assert len(answer.body["overall"]["30d"]["series"]) == 31

    agent, agent_id, _ = await signed_in(client_factory, app)
    await add_member(app, org, agent_id, "agent")
    assert (await agent.call("GET", f"/v1/orgs/{org}/revenue")).status == 403


async def test_sync_now_and_disconnect(client_factory, app, partner):
    owner, org = await owner_with_org(client_factory, app)
    await connect_and_sync(app, owner, org, partner)
    shown = await owner.call("GET", f"/v1/orgs/{org}/shopify")
    assert shown.body["last_result"]["ok"] and {a["name"] for a in shown.body["apps"]} == \
        {"Reviews Pro", "Upsell Wizard", "Bundle Kit"}
    assert (await owner.call("POST", f"/v1/orgs/{org}/shopify/sync")).status == 202
    assert (await owner.call("DELETE", f"/v1/orgs/{org}/shopify")).status == 204
    assert (await owner.call("GET", f"/v1/orgs/{org}/shopify")).body["connected"] is False
    assert (await owner.call("DELETE", f"/v1/orgs/{org}/shopify")).status == 404
    assert (await owner.call("POST", f"/v1/orgs/{org}/shopify/sync")).status == 404
    async with scoped(app[keys.DB], org_id=org) as conn:
        assert await conn.fetchval("SELECT count(*) FROM shopify_connections WHERE org_id = $1", org) == 0
        actions = {r["action"] for r in await conn.fetch("SELECT action FROM audit_log WHERE org_id = $1", org)}
    assert {"shopify.connected", "shopify.sync_requested", "shopify.disconnected"} <= actions
