"""Members: role changes and removal follow the rules and cut gateway tokens at once, in that
organisation only (the person's sign-in and other organisations are untouched); per-member
overrides."""

import asyncio
import contextlib

import orjson

from admin_api import keys
from convot.tokens import TokenVerifier
from tests.admin_api.conftest import add_member, make_org, remember, signed_in


@contextlib.asynccontextmanager
async def control_events(redis_client):
    pubsub = redis_client.pubsub()
    await pubsub.subscribe("cv:control")
    await pubsub.get_message(timeout=1)  # the subscription confirmation
    events = []

    async def next_event(timeout=5.0):
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if message is not None:
                event = orjson.loads(message["data"])
                events.append(event)
                return event
        raise AssertionError("no control event")

    try:
        yield next_event
    finally:
        await pubsub.unsubscribe()
        await pubsub.aclose()


async def team(client_factory, app):
    owner, owner_id, _ = await signed_in(client_factory, app)
    org_id = await make_org(app, owner_id)
    admin, admin_id, _ = await signed_in(client_factory, app)
    agent, agent_id, _ = await signed_in(client_factory, app)
    await add_member(app, org_id, admin_id, "admin")
    await add_member(app, org_id, agent_id, "agent")
    return org_id, (owner, owner_id), (admin, admin_id), (agent, agent_id)


async def test_a_role_change_kills_gateway_tokens_at_once_and_applies_to_the_next_request(client_factory, app,
                                                                                         redis_client):
    org_id, (owner, _), (admin, _), (agent, agent_id) = await team(client_factory, app)
    issued = await agent.call("POST", f"/v1/orgs/{org_id}/gateway-token")
    assert issued.status == 200
    remember(issued.body["token"])
    claims = TokenVerifier(app[keys.CONFIG]).verify(issued.body["token"])
    assert (claims.sub, claims.org, claims.role, claims.version) == (str(agent_id), str(org_id), "agent", 0)
    assert issued.body["url"] == app[keys.CONFIG].admin_api.gateway_public_url

    async with control_events(redis_client) as next_event:
        changed = await admin.call("PATCH", f"/v1/orgs/{org_id}/members/{agent_id}", {"role": "admin"})
        assert changed.status == 200 and changed.body["role"] == "admin"
        event = await next_event()
    assert event == {"kind": "role_changed", "org": str(org_id), "user": str(agent_id), "version": 1}
    # the record gateways check on (re)connection: tokens below version 1 are dead
    assert (await redis_client.get(f"cv:rv:s:{org_id}:{agent_id}")).decode() == "-1:1"
    # the session stands: the next request already has the admin's permissions (audit.read)
    entry = (await agent.call("GET", f"/v1/orgs/{org_id}/audit?action=member.role_changed")).body["items"][0]
    assert entry["details"] == {"from": "agent", "to": "admin"} and entry["target_id"] == str(agent_id)
    # and back to agent: the same session loses them on the next request
    assert (await owner.call("PATCH", f"/v1/orgs/{org_id}/members/{agent_id}", {"role": "agent"})).status == 200
    assert (await agent.call("GET", f"/v1/orgs/{org_id}/audit")).code == "forbidden"
    assert (await owner.call("PATCH", f"/v1/orgs/{org_id}/members/{agent_id}", {"role": "admin"})).status == 200
    # a new token carries the new role and version
    fresh = TokenVerifier(app[keys.CONFIG]).verify((await agent.call("POST", f"/v1/orgs/{org_id}/gateway-token")).body["token"])
    assert (fresh.role, fresh.version) == ("admin", 3)


async def test_gateway_tokens_need_a_csrf_token_and_membership(client_factory, app):
    org_id, (owner, _), _, (agent, _) = await team(client_factory, app)
    assert (await agent.call("POST", f"/v1/orgs/{org_id}/gateway-token", csrf=False)).code == "csrf_failed"
    stranger, _, _ = await signed_in(client_factory, app)
    assert (await stranger.call("POST", f"/v1/orgs/{org_id}/gateway-token")).code == "not_found"


async def test_signing_out_tells_the_gateways(client_factory, app, redis_client):
    org_id, _, _, (agent, agent_id) = await team(client_factory, app)
    async with control_events(redis_client) as next_event:
        assert (await agent.call("POST", "/v1/auth/logout")).status == 204
        event = await next_event()
    assert event == {"kind": "logout", "org": str(org_id), "user": str(agent_id)}


async def test_role_rules(client_factory, app):
    org_id, (owner, owner_id), (admin, admin_id), (agent, agent_id) = await team(client_factory, app)
    # admins never make or unmake owners
    assert (await admin.call("PATCH", f"/v1/orgs/{org_id}/members/{agent_id}", {"role": "owner"})).code == "forbidden"
    assert (await admin.call("PATCH", f"/v1/orgs/{org_id}/members/{owner_id}", {"role": "agent"})).code == "forbidden"
    # agents manage nobody
    assert (await agent.call("PATCH", f"/v1/orgs/{org_id}/members/{admin_id}", {"role": "agent"})).code == "forbidden"
    # the super-owner cannot be demoted, even by another owner
    second, second_id, _ = await signed_in(client_factory, app)
    await add_member(app, org_id, second_id, "owner")
    assert (await second.call("PATCH", f"/v1/orgs/{org_id}/members/{owner_id}", {"role": "admin"})).code == "forbidden"
    assert (await owner.call("PATCH", f"/v1/orgs/{org_id}/members/{owner_id}", {"role": "admin"})).code == "forbidden"
    # owners promote to owner
    assert (await owner.call("PATCH", f"/v1/orgs/{org_id}/members/{agent_id}", {"role": "owner"})).body["role"] == "owner"
    # unknown role
    bad = await owner.call("PATCH", f"/v1/orgs/{org_id}/members/{admin_id}", {"role": "god"})
    assert (bad.status, bad.body["error"]["details"]["field"]) == (422, "role")


async def test_overrides_grant_and_withdraw_access(client_factory, app):
    org_id, (owner, _), (admin, admin_id), (agent, agent_id) = await team(client_factory, app)
    granted = await owner.call("PATCH", f"/v1/orgs/{org_id}/members/{agent_id}", {"overrides": {"revenue": True}})
    assert granted.body["overrides"] == {"revenue": True}
    perms = (await agent.call("GET", f"/v1/orgs/{org_id}")).body["permissions"]
    assert "revenue.read" in perms and "reports.read" not in perms

    # an admin may not hand out revenue access (they do not have it) but may withdraw reports
    assert (await admin.call("PATCH", f"/v1/orgs/{org_id}/members/{agent_id}",
                             {"overrides": {"revenue": False}})).code == "forbidden"
    second_admin, second_id, _ = await signed_in(client_factory, app)
    await add_member(app, org_id, second_id, "admin")
    withdrawn = await admin.call("PATCH", f"/v1/orgs/{org_id}/members/{second_id}", {"overrides": {"reports": False}})
    assert withdrawn.body["overrides"] == {"reports": False}
    assert "reports.read" not in (await second_admin.call("GET", f"/v1/orgs/{org_id}")).body["permissions"]
    assert (await second_admin.call("GET", f"/v1/orgs/{org_id}/audit")).status == 200  # audit is not reports

    # null returns to the role's default; overrides of owners mean nothing and are refused
    cleared = await owner.call("PATCH", f"/v1/orgs/{org_id}/members/{second_id}", {"overrides": {"reports": None}})
    assert cleared.body["overrides"] == {}
    owner_row = await owner.call("PATCH", f"/v1/orgs/{org_id}/members/{granted.body['user_id']}", {"overrides": {}})
    assert owner_row.status == 200
    listed = await owner.call("GET", f"/v1/orgs/{org_id}/members")
    me = next(m for m in listed.body["items"] if m["is_super_owner"])
    refused = await owner.call("PATCH", f"/v1/orgs/{org_id}/members/{me['user_id']}", {"overrides": {"reports": False}})
    assert (refused.status, refused.body["error"]["details"]["field"]) == (422, "overrides")
    unknown = await owner.call("PATCH", f"/v1/orgs/{org_id}/members/{agent_id}", {"overrides": {"billing": True}})
    assert unknown.body["error"]["details"]["field"] == "overrides.billing"


async def test_removing_a_member_cuts_this_organisation_at_once_and_nothing_else(client_factory, app, redis_client):
    org_id, (owner, owner_id), (admin, admin_id), (agent, agent_id) = await team(client_factory, app)
    # the agent also works for another organisation, with the same sign-in
    other_owner, other_owner_id, _ = await signed_in(client_factory, app)
    other_org = await make_org(app, other_owner_id)
    await add_member(app, other_org, agent_id, "agent")
    assert (await agent.call("DELETE", f"/v1/orgs/{org_id}/members/{admin_id}")).code == "forbidden"
    assert (await admin.call("DELETE", f"/v1/orgs/{org_id}/members/{owner_id}")).code == "forbidden"
    async with control_events(redis_client) as next_event:
        assert (await admin.call("DELETE", f"/v1/orgs/{org_id}/members/{agent_id}")).status == 204
        event = await next_event()
    assert event == {"kind": "member_removed", "org": str(org_id), "user": str(agent_id)}
    cut, version = (await redis_client.get(f"cv:rv:s:{org_id}:{agent_id}")).decode().split(":")
    assert int(cut) > 0 and version == "-1"  # every token issued until now is dead
    # at once, with the same session: this organisation is gone, the other one is untouched
    assert (await agent.call("GET", f"/v1/orgs/{org_id}")).code == "not_found"
    me = await agent.call("GET", "/v1/me")
    assert me.status == 200 and [o["org_id"] for o in me.body["organisations"]] == [str(other_org)]
    assert (await agent.call("GET", f"/v1/orgs/{other_org}")).status == 200
    assert await redis_client.get(f"cv:rv:s:{other_org}:{agent_id}") is None      # its gateway tokens live on
    members = (await owner.call("GET", f"/v1/orgs/{org_id}/members")).body["items"]
    assert str(agent_id) not in {m["user_id"] for m in members}
    assert (await admin.call("DELETE", f"/v1/orgs/{org_id}/members/{agent_id}")).code == "not_found"
    assert (await owner.call("DELETE", f"/v1/orgs/{org_id}/members/{owner_id}")).code == "forbidden"


async def test_members_are_listed_to_every_member(client_factory, app):
    org_id, (owner, owner_id), (admin, admin_id), (agent, agent_id) = await team(client_factory, app)
    listed = await agent.call("GET", f"/v1/orgs/{org_id}/members")
    assert {m["role"] for m in listed.body["items"]} == {"owner", "admin", "agent"}
    one = await agent.call("GET", f"/v1/orgs/{org_id}/members/{owner_id}")
    assert one.body["is_super_owner"] is True
