"""Apps: public key, identity secret (encrypted, visible to admins, rotatable), origins, settings."""

import re
import uuid

from admin_api import keys
from convot.db import scoped
from tests.admin_api.conftest import add_member, signed_in
from tests.admin_api.developer import create_app, owner_with_org, stale_reauth


async def test_create_read_update_an_app(client_factory, app):
    owner, _, org = await owner_with_org(client_factory, app)
    created, secret = await create_app(owner, org, allowed_origins=["https://Shop.Example.com/", "http://localhost:3000"],
                                       settings={"color": "#0f766e", "greeting": "Hi!"}, require_verification=True)
    assert re.fullmatch(r"app_[A-Za-z0-9_-]{16}", created["public_key"])
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    assert created["allowed_origins"] == ["https://shop.example.com", "http://localhost:3000"]
    assert created["settings"] == {"color": "#0f766e", "greeting": "Hi!", "default_section": "conversation",
                                   "email_prompt": True}
    assert created["require_verification"] is True and "identity_secret" not in created

    listed = await owner.call("GET", f"/v1/orgs/{org}/apps")
    assert [a["id"] for a in listed.body["items"]] == [created["id"]]
    assert secret not in str(listed.body)

    patched = await owner.call("PATCH", f"/v1/orgs/{org}/apps/{created['id']}",
                               {"name": "Renamed", "settings": {"email_prompt": False}, "require_verification": False})
    assert patched.status == 200
    assert patched.body["name"] == "Renamed" and patched.body["require_verification"] is False
    assert patched.body["settings"] == {**created["settings"], "email_prompt": False}

    # stored encrypted, bound to the row
    async with scoped(app[keys.DB], org_id=org) as conn:
        blob = await conn.fetchval("SELECT identity_secret_enc FROM apps WHERE id = $1", uuid.UUID(created["id"]))
        actions = [r[0] for r in await conn.fetch("SELECT action FROM audit_log WHERE org_id = $1 ORDER BY id", org)]
    assert secret.encode() not in bytes(blob)
    assert "app.created" in actions and "app.updated" in actions


async def test_bad_origins_and_settings_are_refused_naming_the_field(client_factory, app):
    owner, _, org = await owner_with_org(client_factory, app)
    for origins, index in ((["https://ok.example.com", "https://x.example.com/path"], 1), (["javascript:alert(1)"], 0),
                           (["https://user:pw@x.example.com"], 0)):
        answer = await owner.call("POST", f"/v1/orgs/{org}/apps", {"name": "A", "allowed_origins": origins})
        assert answer.code == "unprocessable_entity" and answer.body["error"]["details"]["field"] == \
            f"allowed_origins[{index}]", answer.body
    answer = await owner.call("POST", f"/v1/orgs/{org}/apps", {"name": "A", "settings": {"color": "red; x: y"}})
    assert answer.code == "unprocessable_entity" and answer.body["error"]["details"]["field"] == "settings.color"
    assert (await owner.call("GET", f"/v1/orgs/{org}/apps")).body["items"] == []


async def test_identity_secret_is_for_admins_and_rotation_needs_reauthentication(client_factory, app):
    owner, owner_id, org = await owner_with_org(client_factory, app)
    created, secret = await create_app(owner, org)
    path = f"/v1/orgs/{org}/apps/{created['id']}/identity-secret"
    assert (await owner.call("GET", path)).body["identity_secret"] == secret

    agent, agent_id, _ = await signed_in(client_factory, app)
    await add_member(app, org, agent_id, "agent")
    assert (await agent.call("GET", f"/v1/orgs/{org}/apps")).status == 200          # agents see apps
    assert (await agent.call("GET", path)).code == "forbidden"                      # not their secrets
    assert (await agent.call("PATCH", f"/v1/orgs/{org}/apps/{created['id']}", {"name": "x"})).code == "forbidden"
    admin, admin_id, _ = await signed_in(client_factory, app)
    await add_member(app, org, admin_id, "admin")
    assert (await admin.call("GET", path)).body["identity_secret"] == secret

    await stale_reauth(app, owner_id)
    assert (await owner.call("POST", path + "/rotate")).code == "reauth_required"
    assert (await owner.reauth()).status == 200
    rotated = await owner.call("POST", path + "/rotate")
    assert rotated.status == 200 and re.fullmatch(r"[0-9a-f]{64}", rotated.body["identity_secret"])
    assert rotated.body["identity_secret"] != secret
    assert (await owner.call("GET", path)).body["identity_secret"] == rotated.body["identity_secret"]


async def test_deleting_an_app_needs_reauthentication(client_factory, app):
    owner, owner_id, org = await owner_with_org(client_factory, app)
    created, _ = await create_app(owner, org)
    path = f"/v1/orgs/{org}/apps/{created['id']}"
    await stale_reauth(app, owner_id)
    assert (await owner.call("DELETE", path)).code == "reauth_required"
    await owner.reauth()
    assert (await owner.call("DELETE", path)).status == 204
    assert (await owner.call("GET", path)).code == "not_found"


async def test_the_plan_limits_the_number_of_apps(client_factory, app):
    owner, _, org = await owner_with_org(client_factory, app)
    await create_app(owner, org)                      # the free plan allows one
    second = await owner.call("POST", f"/v1/orgs/{org}/apps", {"name": "Second"})
    assert (second.status, second.code) == (409, "app_limit_reached")
    async with scoped(app[keys.DB], org_id=org) as conn:
        await conn.execute("UPDATE organisations SET plan = 'team' WHERE id = $1", org)
    assert (await owner.call("POST", f"/v1/orgs/{org}/apps", {"name": "Second"})).status == 201
