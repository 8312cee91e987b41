"""REST contacts: find-or-create by external_id / email, update with custom_data merge, tags,
webhook events, and erasure through the API."""

import uuid

from admin_api import keys
from convot.db import scoped
from engine import keys as engine_keys
from tests.admin_api.conftest import add_member, signed_in
from tests.admin_api.developer import api_client, owner_with_org


async def test_find_or_create(client_factory, app):
    owner, _, org = await owner_with_org(client_factory, app)
    api = await api_client(client_factory, owner, org)
    base = f"/v1/orgs/{org}/contacts"
    first = await api.call("POST", base, {"email": "ana@example.com", "name": "Ana", "custom_data": {"plan": "pro"},
                                          "tags": ["Lead"]})
    assert first.status == 200 and first.body["created"] is True
    contact = first.body["contact"]
    assert (contact["email"], contact["name"], contact["custom_data"], contact["tags"]) == (
        "ana@example.com", "Ana", {"plan": "pro"}, ["lead"])
    assert contact["verified"] is False and contact["external_id"] is None
    # the same email again: found, unchanged
    again = await api.call("POST", base, {"email": "ANA@example.com", "name": "Other"})
    assert again.body["created"] is False and again.body["contact"]["id"] == contact["id"]
    assert again.body["contact"]["name"] == "Ana"
    # an external id with that email: the contact takes the id
    with_id = await api.call("POST", base, {"external_id": "cust-1", "email": "ana@example.com"})
    assert with_id.body["created"] is False and with_id.body["contact"]["external_id"] == "cust-1"
    by_id = await api.call("POST", base, {"external_id": "cust-1"})
    assert by_id.body["contact"]["id"] == contact["id"]
    # another external id with the same email is another person
    other = await api.call("POST", base, {"external_id": "cust-2", "email": "ana@example.com"})
    assert other.body["created"] is True and other.body["contact"]["id"] != contact["id"]
    none = await api.call("POST", base, {"name": "Nobody"})
    assert none.code == "unprocessable_entity" and none.body["error"]["details"]["field"] == "external_id"
    listed = await api.call("GET", base + "?email=ana@example.com")
    assert {c["id"] for c in listed.body["items"]} == {contact["id"], other.body["contact"]["id"]}
    assert [c["id"] for c in (await api.call("GET", base + "?tag=lead")).body["items"]] == [contact["id"]]
    assert [c["id"] for c in (await api.call("GET", base + "?external_id=cust-2")).body["items"]] == \
        [other.body["contact"]["id"]]


async def test_update_merges_custom_data_and_guards_external_id(client_factory, app):
    owner, _, org = await owner_with_org(client_factory, app)
    api = await api_client(client_factory, owner, org)
    base = f"/v1/orgs/{org}/contacts"
    a = (await api.call("POST", base, {"external_id": "a", "custom_data": {"x": 1, "y": 2}})).body["contact"]
    b = (await api.call("POST", base, {"external_id": "b"})).body["contact"]
    updated = await api.call("PATCH", f"{base}/{a['id']}", {"custom_data": {"x": None, "z": "new"}, "phone": "555",
                                                            "tags": ["vip"]})
    assert updated.body["custom_data"] == {"y": 2, "z": "new"} and updated.body["phone"] == "555"
    assert updated.body["tags"] == ["vip"]
    clash = await api.call("PATCH", f"{base}/{b['id']}", {"external_id": "a"})
    assert (clash.status, clash.code) == (409, "conflict")
    bad = await api.call("PATCH", f"{base}/{a['id']}", {"custom_data": {"deep": {"no": 1}}})
    assert bad.code == "unprocessable_entity" and bad.body["error"]["details"]["field"] == "custom_data.deep"
    assert (await api.call("GET", f"{base}/{a['id']}")).body["custom_data"] == {"y": 2, "z": "new"}
    assert (await api.call("GET", f"{base}/{uuid.uuid4()}")).code == "not_found"


async def test_contact_events_reach_the_webhook_queue(client_factory, app):
    owner, _, org = await owner_with_org(client_factory, app)
    api = await api_client(client_factory, owner, org)
    hook = await api.call("POST", f"/v1/orgs/{org}/webhooks",
                          {"url": "https://hooks.example.com/c", "events": ["contact.created", "contact.identified"]})
    created = (await api.call("POST", f"/v1/orgs/{org}/contacts", {"email": "e@example.com"})).body["contact"]
    await api.call("PATCH", f"/v1/orgs/{org}/contacts/{created['id']}", {"name": "only a name"})
    await api.call("PATCH", f"/v1/orgs/{org}/contacts/{created['id']}", {"external_id": "e-1"})
    async with scoped(app[keys.DB], org_id=org) as conn:
        events = [r[0] for r in await conn.fetch(
            "SELECT event FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY created_at",
            uuid.UUID(hook.body["webhook"]["id"]))]
    assert events == ["contact.created", "contact.identified"]


async def test_erasing_a_contact_through_the_api(client_factory, app):
    owner, _, org = await owner_with_org(client_factory, app)
    api = await api_client(client_factory, owner, org)
    contact = (await api.call("POST", f"/v1/orgs/{org}/contacts", {"email": "forget-me@example.com"})).body["contact"]
    conv = (await api.call("POST", f"/v1/orgs/{org}/conversations",
                           {"contact_id": contact["id"], "message": {"body": "personal details"}})).body
    agent, agent_id, _ = await signed_in(client_factory, app)
    await add_member(app, org, agent_id, "agent")
    assert (await agent.call("DELETE", f"/v1/orgs/{org}/contacts/{contact['id']}")).code == "forbidden"
    reader = await api_client(client_factory, owner, org, ["contacts:read"])
    assert (await reader.call("DELETE", f"/v1/orgs/{org}/contacts/{contact['id']}")).code == "forbidden"

    assert (await api.call("DELETE", f"/v1/orgs/{org}/contacts/{contact['id']}")).status == 204
    assert (await api.call("GET", f"/v1/orgs/{org}/contacts/{contact['id']}")).code == "not_found"
    assert (await api.call("GET", f"/v1/orgs/{org}/conversations/{conv['id']}")).code == "not_found"
    assert (await api.call("DELETE", f"/v1/orgs/{org}/contacts/{contact['id']}")).code == "not_found"
    shard = engine_keys.shard_of(str(org), app[keys.CONFIG].engine.shards)
    entries = await app[keys.REDIS].xrange(engine_keys.stream(shard))
    assert not any(f[b"c"].decode() == conv["id"] or f[b"k"].decode() == contact["id"] for _, f in entries)
    async with scoped(app[keys.DB], org_id=org) as conn:
        audit = await conn.fetchrow("SELECT actor_kind, details FROM audit_log WHERE org_id = $1 AND "
                                    "action = 'contact.erased'", org)
    assert audit["actor_kind"] == "api_key" and audit["details"]["conversations"] == 1
