"""REST API keys: shown once, stored hashed, scoped, revocable, last use recorded, rate-limited,
and confined to their organisation."""

import pytest
from prometheus_client import REGISTRY

from admin_api import keys
from convot.db import scoped
from tests.admin_api.conftest import signed_in
from tests.admin_api.developer import api_client, owner_with_org, stale_reauth

RATE_LIMIT = 8


@pytest.fixture(scope="module")
def api_config(servers):
    from convot.embedded import free_port

    return servers.config(smtp={"port": free_port()}, admin_api={"trusted_proxies": "127.0.0.1/32"},
                          rest_api={"rate_limit": RATE_LIMIT, "rate_window": 60})


async def test_key_is_shown_once_and_stored_hashed(client_factory, app):
    owner, owner_id, org = await owner_with_org(client_factory, app)
    await stale_reauth(app, owner_id)
    refused = await owner.call("POST", f"/v1/orgs/{org}/api-keys", {"name": "k", "scopes": ["contacts:read"]})
    assert refused.code == "reauth_required"
    api = await api_client(client_factory, owner, org, ["contacts:read"], name="CRM sync")
    key = api.extra_headers["Authorization"].split(" ", 1)[1]
    assert key.startswith(f"ck_{api.key_id}:") and len(key.split(":")[1]) == 43
    listed = await owner.call("GET", f"/v1/orgs/{org}/api-keys")
    assert [k["name"] for k in listed.body["items"]] == ["CRM sync"]
    assert listed.body["items"][0]["prefix"] == f"ck_{api.key_id}" and key.split(":")[1] not in str(listed.body)
    async with scoped(app[keys.DB], org_id=org) as conn:
        row = await conn.fetchrow("SELECT secret_hash, scopes FROM api_keys WHERE id = $1", api.key_id)
    assert row["secret_hash"] != key.split(":")[1] and len(row["secret_hash"]) == 64
    assert list(row["scopes"]) == ["contacts:read"]


async def test_scopes_limit_what_a_key_may_do(client_factory, app):
    owner, _, org = await owner_with_org(client_factory, app)
    reader = await api_client(client_factory, owner, org, ["conversations:read", "contacts:read"])
    contact = await owner.call("POST", f"/v1/orgs/{org}/contacts", {"email": "scope@example.com"})
    conv = await owner.call("POST", f"/v1/orgs/{org}/conversations", {"contact_id": contact.body["contact"]["id"]})
    assert (await reader.call("GET", f"/v1/orgs/{org}/conversations")).status == 200
    send = await reader.call("POST", f"/v1/orgs/{org}/conversations/{conv.body['id']}/messages", {"body": "hi"})
    assert (send.status, send.code) == (403, "forbidden") and send.body["error"]["details"] == {"scope": "messages:write"}
    assert (await reader.call("GET", f"/v1/orgs/{org}/conversations/{conv.body['id']}/messages")).code == "forbidden"
    # routes without an API scope refuse keys altogether
    for method, path in (("GET", f"/v1/orgs/{org}/members"), ("GET", f"/v1/orgs/{org}/api-keys"),
                         ("GET", "/v1/me"), ("POST", f"/v1/orgs/{org}/socket-token")):
        assert (await reader.call(method, path)).code == "forbidden", path


async def test_revoked_malformed_and_unknown_keys_get_401(client_factory, app):
    owner, _, org = await owner_with_org(client_factory, app)
    api = await api_client(client_factory, owner, org, ["contacts:read"])
    path = f"/v1/orgs/{org}/contacts"
    assert (await api.call("GET", path)).status == 200
    assert (await owner.call("DELETE", f"/v1/orgs/{org}/api-keys/{api.key_id}")).status == 204
    revoked = await api.call("GET", path)
    assert (revoked.status, revoked.code) == (401, "unauthorized")
    assert (await owner.call("DELETE", f"/v1/orgs/{org}/api-keys/{api.key_id}")).status == 204  # idempotent
    key = api.extra_headers["Authorization"]
    for header in (key[:-1] + ("A" if key[-1] != "A" else "B"), "Bearer ck_0123456789abcdef:" + "x" * 43,
                   "Bearer ck_nothex:abc", "Bearer ck_"):
        answer = await api.call("GET", path, headers={"Authorization": header})
        assert (answer.status, answer.code) == (401, "unauthorized"), header
    listed = await owner.call("GET", f"/v1/orgs/{org}/api-keys")
    assert listed.body["items"][0]["revoked_at"] is not None
    assert (await owner.call("DELETE", f"/v1/orgs/{org}/api-keys/0123456789abcdef")).code == "not_found"


async def test_a_key_of_organisation_a_gets_404_in_organisation_b(client_factory, app):
    owner_a, _, org_a = await owner_with_org(client_factory, app, "A")
    owner_b, _, org_b = await owner_with_org(client_factory, app, "B")
    key_a = await api_client(client_factory, owner_a, org_a)
    contact_b = await owner_b.call("POST", f"/v1/orgs/{org_b}/contacts", {"email": "b@example.com"})
    conv_b = await owner_b.call("POST", f"/v1/orgs/{org_b}/conversations",
                                {"contact_id": contact_b.body["contact"]["id"], "message": {"body": "B's secret"}})
    for method, path, body in (
            ("GET", f"/v1/orgs/{org_b}/conversations/{conv_b.body['id']}", None),
            ("GET", f"/v1/orgs/{org_b}/conversations", None),
            ("POST", f"/v1/orgs/{org_b}/conversations/{conv_b.body['id']}/messages", {"body": "x"}),
            # A's own organisation in the path, B's conversation
            ("GET", f"/v1/orgs/{org_a}/conversations/{conv_b.body['id']}", None),
            ("GET", f"/v1/orgs/{org_a}/conversations/{conv_b.body['id']}/messages", None),
            ("PATCH", f"/v1/orgs/{org_a}/conversations/{conv_b.body['id']}", {"status": "resolved"}),
            ("DELETE", f"/v1/orgs/{org_a}/conversations/{conv_b.body['id']}/messages/1", None),
            ("GET", f"/v1/orgs/{org_a}/contacts/{contact_b.body['contact']['id']}", None)):
        answer = await key_a.call(method, path, body)
        assert (answer.status, answer.code) == (404, "not_found"), (method, path, answer.body)
    messages = await owner_b.call("GET", f"/v1/orgs/{org_b}/conversations/{conv_b.body['id']}/messages")
    assert [m["body"] for m in messages.body["items"]] == ["B's secret"]
    assert (await owner_b.call("GET", f"/v1/orgs/{org_b}/conversations/{conv_b.body['id']}")).body["status"] == "open"


def _rate_limited(limit: str) -> float:
    return REGISTRY.get_sample_value("convot_rate_limited_total", {"limit": limit}) or 0.0


async def test_last_use_is_recorded_and_keys_are_rate_limited(client_factory, app):
    owner, _, org = await owner_with_org(client_factory, app)
    api = await api_client(client_factory, owner, org, ["contacts:read"])
    other = await api_client(client_factory, owner, org, ["contacts:read"])
    path = f"/v1/orgs/{org}/contacts"
    counted = {limit: _rate_limited(limit) for limit in ("api_key", "other")}
    statuses = [(await api.call("GET", path)).status for _ in range(RATE_LIMIT + 2)]
    assert statuses == [200] * RATE_LIMIT + [429, 429]
    limited = await api.call("GET", path)
    assert limited.code == "rate_limited" and 1 <= int(limited.headers["Retry-After"]) <= 60
    # every 429 of a key is counted under its limit's name (the app runs in this process)
    assert (_rate_limited("api_key"), _rate_limited("other")) == (counted["api_key"] + 3, counted["other"])
    assert (await other.call("GET", path)).status == 200, "the limit is per key"
    listed = {k["id"]: k for k in (await owner.call("GET", f"/v1/orgs/{org}/api-keys")).body["items"]}
    assert listed[api.key_id]["last_used_at"] is not None


async def test_agents_cannot_manage_keys(client_factory, app):
    owner, _, org = await owner_with_org(client_factory, app)
    agent, agent_id, _ = await signed_in(client_factory, app)
    from tests.admin_api.conftest import add_member

    await add_member(app, org, agent_id, "agent")
    assert (await agent.call("GET", f"/v1/orgs/{org}/api-keys")).code == "forbidden"
    assert (await agent.call("POST", f"/v1/orgs/{org}/api-keys", {"name": "k", "scopes": ["contacts:read"]})).code \
        == "forbidden"
