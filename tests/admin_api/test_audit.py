"""Audit log: who did what, from where, to what, when; filters and paging; read by owners and
admins only; append-only for the services' role."""

import datetime as dt

import asyncpg
import pytest

from admin_api import keys
from convot.db import scoped
from tests.admin_api.conftest import add_member, make_org, new_email, signed_in


async def test_entries_carry_actor_ip_user_agent_target_and_time(client_factory, app):
    owner, owner_id, _ = await signed_in(client_factory, app)
    org_id = await make_org(app, owner_id)
    owner.extra_headers["User-Agent"] = "AuditTest/1.0"
    invite = await owner.call("POST", f"/v1/orgs/{org_id}/invites", {"email": new_email(), "role": "agent"})
    entry = (await owner.call("GET", f"/v1/orgs/{org_id}/audit?action=invite.created")).body["items"][0]
    assert entry["actor_id"] == str(owner_id) and entry["actor_kind"] == "user"
    assert entry["ip"] == owner.ip and entry["user_agent"] == "AuditTest/1.0"
    assert (entry["target_type"], entry["target_id"]) == ("invite", invite.body["id"])
    assert dt.datetime.fromisoformat(entry["created_at"]) <= dt.datetime.now(dt.timezone.utc)


async def test_filters_and_paging(client_factory, app):
    owner, owner_id, _ = await signed_in(client_factory, app)
    org_id = await make_org(app, owner_id)
    admin, admin_id, _ = await signed_in(client_factory, app)
    await add_member(app, org_id, admin_id, "admin")
    for i in range(5):
        await owner.call("PATCH", f"/v1/orgs/{org_id}", {"name": f"Name {i}"})
    await admin.call("POST", f"/v1/orgs/{org_id}/invites", {"email": new_email(), "role": "agent"})

    by_actor = (await owner.call("GET", f"/v1/orgs/{org_id}/audit?actor_id={admin_id}")).body["items"]
    assert [e["action"] for e in by_actor] == ["invite.created"]
    page1 = (await owner.call("GET", f"/v1/orgs/{org_id}/audit?action=org.renamed&limit=2")).body
    assert [e["details"]["to"] for e in page1["items"]] == ["Name 4", "Name 3"]
    page2 = (await owner.call("GET", f"/v1/orgs/{org_id}/audit?action=org.renamed&limit=2&before={page1['next_before']}")).body
    assert [e["details"]["to"] for e in page2["items"]] == ["Name 2", "Name 1"]
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).isoformat()
    since = await owner.call("GET", f"/v1/orgs/{org_id}/audit?since={future.replace('+00:00', 'Z')}")
    assert since.body["items"] == []
    bad = await owner.call("GET", f"/v1/orgs/{org_id}/audit?limit=1000")
    assert (bad.status, bad.body["error"]["details"]["field"]) == (422, "limit")
    unknown = await owner.call("GET", f"/v1/orgs/{org_id}/audit?sql=1")
    assert unknown.body["error"]["details"]["field"] == "sql"


async def test_agents_cannot_read_the_audit_log(client_factory, app):
    owner, owner_id, _ = await signed_in(client_factory, app)
    org_id = await make_org(app, owner_id)
    agent, agent_id, _ = await signed_in(client_factory, app)
    await add_member(app, org_id, agent_id, "agent")
    assert (await agent.call("GET", f"/v1/orgs/{org_id}/audit")).code == "forbidden"
    assert (await agent.call("GET", f"/v1/orgs/{org_id}/auth-events")).code == "forbidden"


async def test_authentication_events_of_members_are_readable_with_filters(client_factory, app):
    owner, owner_id, _ = await signed_in(client_factory, app)
    org_id = await make_org(app, owner_id)
    agent, agent_id, _ = await signed_in(client_factory, app)
    await add_member(app, org_id, agent_id, "agent")
    await agent.login(agent.email, "a wrong password")
    events = (await owner.call("GET", f"/v1/orgs/{org_id}/auth-events?user_id={agent_id}&success=false")).body["items"]
    assert events[0]["event"] == "login" and events[0]["details"] == {"reason": "invalid_credentials"}
    assert events[0]["ip"] == agent.ip
    # outsiders' events are not shown
    stranger, stranger_id, _ = await signed_in(client_factory, app)
    shown = (await owner.call("GET", f"/v1/orgs/{org_id}/auth-events?user_id={stranger_id}")).body["items"]
    assert shown == []
    mine = (await agent.call("GET", "/v1/me/auth-events?event=login")).body["items"]
    assert {e["success"] for e in mine} == {True, False}


async def test_the_services_role_cannot_rewrite_history(app):
    owner_id = (await app[keys.DB].fetchval("SELECT gen_random_uuid()"))
    async with app[keys.DB].acquire() as conn:
        await conn.execute("INSERT INTO users (id, email, password_hash) VALUES ($1, $2, 'x')", owner_id, new_email())
    org_id = await make_org(app, owner_id)
    async with scoped(app[keys.DB], org_id=org_id) as conn:
        await conn.execute("INSERT INTO audit_log (org_id, actor_kind, action) VALUES ($1, 'system', 'probe')", org_id)
    for statement in ("UPDATE audit_log SET action = 'forged' WHERE org_id = $1",
                      "DELETE FROM audit_log WHERE org_id = $1"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with scoped(app[keys.DB], org_id=org_id) as conn:
                await conn.execute(statement, org_id)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with app[keys.DB].acquire() as conn:
            await conn.execute("DELETE FROM auth_events WHERE user_id = $1", owner_id)
