"""Webhook endpoints through the API: https only outside development, secrets, enable/disable,
"send test", and the delivery log.  (Delivery itself: tests/engine/test_webhooks.py.)"""

import uuid

import pytest

from admin_api import keys
from convot.db import scoped
from engine import webhooks as engine_webhooks
from tests.admin_api.conftest import add_member, remember, signed_in
from tests.admin_api.developer import api_client, owner_with_org, stale_reauth


@pytest.fixture(scope="module")
def api_config(servers):
    """Production rules: https endpoints on public hosts only."""
    from convot.embedded import free_port

    return servers.config(smtp={"port": free_port()},
                          admin_api={"trusted_proxies": "127.0.0.1/32", "development": False})


async def test_register_read_change_and_delete_an_endpoint(client_factory, app):
    owner, owner_id, org = await owner_with_org(client_factory, app)
    api = await api_client(client_factory, owner, org, ["webhooks:read", "webhooks:write"])
    base = f"/v1/orgs/{org}/webhooks"
    created = await api.call("POST", base, {"url": "https://hooks.example.com/convot", "description": "CRM",
                                            "events": ["message.received", "contact.created", "message.received"]})
    assert created.status == 201, created.body
    hook, secret = created.body["webhook"], created.body["secret"]
    remember(secret)
    assert secret.startswith("whsec_") and len(secret) > 40
    assert hook["events"] == ["message.received", "contact.created"] and hook["enabled"] is True
    assert secret not in str((await api.call("GET", base)).body)
    async with scoped(app[keys.DB], org_id=org) as conn:
        blob = await conn.fetchval("SELECT secret_enc FROM webhooks WHERE id = $1", uuid.UUID(hook["id"]))
    assert secret.encode() not in bytes(blob)

    # the secret: members with webhooks.manage only (not API keys), rotation after re-authentication
    assert (await api.call("GET", f"{base}/{hook['id']}/secret")).code == "forbidden"
    assert (await owner.call("GET", f"{base}/{hook['id']}/secret")).body["secret"] == secret
    await stale_reauth(app, owner_id)
    assert (await owner.call("POST", f"{base}/{hook['id']}/secret/rotate")).code == "reauth_required"
    await owner.reauth()
    rotated = (await owner.call("POST", f"{base}/{hook['id']}/secret/rotate")).body["secret"]
    remember(rotated)
    assert rotated != secret and (await owner.call("GET", f"{base}/{hook['id']}/secret")).body["secret"] == rotated

    patched = await api.call("PATCH", f"{base}/{hook['id']}", {"events": ["conversation.resolved"],
                                                               "url": "https://hooks.example.com/v2"})
    assert patched.body["events"] == ["conversation.resolved"] and patched.body["url"] == "https://hooks.example.com/v2"
    assert (await api.call("DELETE", f"{base}/{hook['id']}")).status == 204
    assert (await api.call("GET", f"{base}/{hook['id']}")).code == "not_found"
    async with scoped(app[keys.DB], org_id=org) as conn:
        actions = {r[0] for r in await conn.fetch("SELECT action FROM audit_log WHERE org_id = $1", org)}
    assert {"webhook.created", "webhook.secret_viewed", "webhook.secret_rotated", "webhook.updated",
            "webhook.deleted"} <= actions


@pytest.mark.parametrize("url,reason", [
    ("http://hooks.example.com/x", "must use https"),
    ("https://127.0.0.1/x", "must not point to a private, loopback or reserved address"),
    ("https://10.0.0.8/x", "must not point to a private, loopback or reserved address"),
    ("https://localhost/x", "must name a public host"),
    ("https://u:p@hooks.example.com/x", "must not contain credentials"),
])
async def test_endpoints_must_be_public_https(client_factory, app, url, reason):
    owner, _, org = await owner_with_org(client_factory, app)
    answer = await owner.call("POST", f"/v1/orgs/{org}/webhooks", {"url": url, "events": ["message.sent"]})
    assert answer.code == "unprocessable_entity"
    assert answer.body["error"]["details"] == {"field": "url", "reason": reason}


async def test_events_must_be_known_and_agents_cannot_manage(client_factory, app):
    owner, _, org = await owner_with_org(client_factory, app)
    for events, field in ((["message.teleported"], "events[0]"), ([], "events")):
        answer = await owner.call("POST", f"/v1/orgs/{org}/webhooks", {"url": "https://h.example.com", "events": events})
        assert answer.code == "unprocessable_entity" and answer.body["error"]["details"]["field"] == field
    agent, agent_id, _ = await signed_in(client_factory, app)
    await add_member(app, org, agent_id, "agent")
    assert (await agent.call("GET", f"/v1/orgs/{org}/webhooks")).code == "forbidden"


async def test_send_test_and_the_delivery_log(client_factory, app):
    owner, _, org = await owner_with_org(client_factory, app)
    base = f"/v1/orgs/{org}/webhooks"
    hook = (await owner.call("POST", base, {"url": "https://hooks.example.com/t", "events": ["message.sent"]})).body
    hook_id = hook["webhook"]["id"]
    tests = [await owner.call("POST", f"{base}/{hook_id}/test") for _ in range(3)]
    assert all(t.status == 202 for t in tests)
    log = await owner.call("GET", f"{base}/{hook_id}/deliveries?limit=2")
    assert [d["id"] for d in log.body["items"]] == [tests[2].body["delivery_id"], tests[1].body["delivery_id"]]
    first = log.body["items"][0]
    assert first["event"] == "webhook.test" and first["status"] == "pending" and first["attempts"] == 0
    assert first["next_attempt_at"] is not None
    older = await owner.call("GET", f"{base}/{hook_id}/deliveries?cursor={log.body['next_cursor']}")
    assert [d["id"] for d in older.body["items"]] == [tests[0].body["delivery_id"]]
    assert older.body["next_cursor"] is None
    detail = await owner.call("GET", f"{base}/{hook_id}/deliveries/{tests[0].body['delivery_id']}")
    assert detail.body["payload"]["type"] == "webhook.test" and detail.body["payload"]["id"] == tests[0].body["event_id"]
    assert detail.body["payload"]["data"] == {"webhook_id": hook_id}

    # disabling: nothing more is sent, pending deliveries end as failed, "send test" refuses
    await owner.call("PATCH", f"{base}/{hook_id}", {"enabled": False})
    failed = await owner.call("GET", f"{base}/{hook_id}/deliveries?status=failed")
    assert len(failed.body["items"]) == 3 and {d["last_error"] for d in failed.body["items"]} == {"webhook_disabled"}
    assert (await owner.call("POST", f"{base}/{hook_id}/test")).code == "conflict"
    async with scoped(app[keys.DB], org_id=org) as conn:
        queued = await engine_webhooks.enqueue(conn, org, [engine_webhooks.Event(
            str(org), "message.sent", "ev_" + uuid.uuid4().hex, None, {"id": "x"})])
    assert queued == 0, "a disabled endpoint gets no new deliveries"
    assert (await owner.call("GET", f"{base}/{hook_id}/deliveries/{uuid.uuid4()}")).code == "not_found"
