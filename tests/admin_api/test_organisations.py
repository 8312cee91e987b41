"""Organisations: the creator is the super-owner; rename, deletion with grace, restore, leave."""

from admin_api import keys
from tests.admin_api.conftest import add_member, make_org, signed_in


async def test_create_makes_the_creator_super_owner(client_factory, app):
    c, user_id, _ = await signed_in(client_factory, app)
    created = await c.call("POST", "/v1/orgs", {"name": "  Acme Apps  "})
    assert created.status == 201
    org = created.body
    assert org["name"] == "Acme Apps" and org["role"] == "owner" and org["is_super_owner"] is True
    assert org["super_owner_id"] == str(user_id) and "org.delete" in org["permissions"]
    listed = await c.call("GET", "/v1/orgs")
    assert [o["id"] for o in listed.body["items"]] == [org["id"]]
    audit = await c.call("GET", f"/v1/orgs/{org['id']}/audit?action=org.created")
    assert audit.body["items"][0]["actor_id"] == str(user_id)


async def test_create_validates_the_name(client_factory, app):
    c, _, _ = await signed_in(client_factory, app)
    for body, field in (({"name": ""}, "name"), ({"name": "x" * 201}, "name"), ({}, "name"),
                        ({"name": "ok", "plan": "enterprise"}, "plan")):
        answer = await c.call("POST", "/v1/orgs", body)
        assert (answer.status, answer.body["error"]["details"]["field"]) == (422, field)


async def test_only_owners_rename(client_factory, app):
    owner, owner_id, _ = await signed_in(client_factory, app)
    org_id = await make_org(app, owner_id)
    admin, admin_id, _ = await signed_in(client_factory, app)
    await add_member(app, org_id, admin_id, "admin")
    assert (await admin.call("PATCH", f"/v1/orgs/{org_id}", {"name": "Hijacked"})).code == "forbidden"
    renamed = await owner.call("PATCH", f"/v1/orgs/{org_id}", {"name": "Renamed"})
    assert renamed.body["name"] == "Renamed"
    entry = (await owner.call("GET", f"/v1/orgs/{org_id}/audit?action=org.renamed")).body["items"][0]
    assert entry["details"] == {"from": "Org", "to": "Renamed"}


async def test_only_the_super_owner_deletes_and_only_after_reauth(client_factory, app):
    creator, creator_id, _ = await signed_in(client_factory, app)
    org_id = await make_org(app, creator_id)
    owner, owner_id, _ = await signed_in(client_factory, app)
    await add_member(app, org_id, owner_id, "owner")
    assert (await owner.call("DELETE", f"/v1/orgs/{org_id}")).code == "forbidden"

    async with app[keys.DB].acquire() as conn:
        await conn.execute("UPDATE user_sessions SET reauth_at = NULL WHERE user_id = $1", creator_id)
    assert (await creator.call("DELETE", f"/v1/orgs/{org_id}")).code == "reauth_required"
    await creator.reauth()
    deleted = await creator.call("DELETE", f"/v1/orgs/{org_id}")
    assert deleted.status == 202 and deleted.body["deletion_scheduled_at"] is not None
    assert (await owner.call("POST", f"/v1/orgs/{org_id}/restore")).code == "forbidden"
    restored = await creator.call("POST", f"/v1/orgs/{org_id}/restore")
    assert restored.status == 200 and restored.body["deletion_scheduled_at"] is None
    assert (await creator.call("POST", f"/v1/orgs/{org_id}/restore")).code == "conflict"
    actions = [e["action"] for e in (await creator.call("GET", f"/v1/orgs/{org_id}/audit")).body["items"]]
    assert actions[:2] == ["org.deletion_cancelled", "org.deletion_scheduled"]


async def test_members_may_leave_but_not_the_super_owner(client_factory, app):
    creator, creator_id, _ = await signed_in(client_factory, app)
    org_id = await make_org(app, creator_id)
    agent, agent_id, _ = await signed_in(client_factory, app)
    await add_member(app, org_id, agent_id, "agent")
    assert (await creator.call("POST", f"/v1/orgs/{org_id}/leave")).code == "forbidden"
    assert (await agent.call("POST", f"/v1/orgs/{org_id}/leave")).status == 204
    await agent.login(agent.email)  # leaving ended the agent's sessions
    assert (await agent.call("GET", f"/v1/orgs/{org_id}")).code == "not_found"
