"""Invitations: 7 days, single use, who may invite whom, acceptance by the invited address."""

import datetime as dt
import uuid

from admin_api import keys
from convot.db import scoped
from tests.admin_api.conftest import add_member, make_org, new_email, signed_in, token_from, wait_for_mail


async def org_with_admin(client_factory, app):
    owner, owner_id, _ = await signed_in(client_factory, app)
    org_id = await make_org(app, owner_id, "Invite Co")
    admin, admin_id, _ = await signed_in(client_factory, app)
    await add_member(app, org_id, admin_id, "admin")
    return org_id, owner, admin


async def test_invite_accept_once(client_factory, app):
    org_id, owner, admin = await org_with_admin(client_factory, app)
    email = new_email("invitee")
    created = await admin.call("POST", f"/v1/orgs/{org_id}/invites", {"email": email, "role": "agent"})
    assert created.status == 201 and created.body["status"] == "pending"
    lifetime = dt.datetime.fromisoformat(created.body["expires_at"]) - dt.datetime.fromisoformat(created.body["created_at"])
    assert lifetime == dt.timedelta(days=7)
    mail = await wait_for_mail(app, email, "invited to join Invite Co")
    token = token_from(mail)
    assert "/app/accept-invite#token=" in mail.text and "7 days" in mail.text

    anon = await client_factory()
    preview = await anon.call("POST", "/v1/invites/inspect", {"token": token})
    assert preview.body["organisation"] == "Invite Co" and preview.body["role"] == "agent"

    invitee, invitee_id, _ = await signed_in(client_factory, app, email=email)
    accepted = await invitee.call("POST", "/v1/invites/accept", {"token": token})
    assert accepted.status == 200 and accepted.body["role"] == "agent" and accepted.body["id"] == str(org_id)
    again = await invitee.call("POST", "/v1/invites/accept", {"token": token})
    assert (again.status, again.code) == (400, "token_invalid")
    listed = await admin.call("GET", f"/v1/orgs/{org_id}/invites")
    assert listed.body["items"][0]["status"] == "accepted"
    actions = [e["action"] for e in (await owner.call("GET", f"/v1/orgs/{org_id}/audit")).body["items"]]
    assert "invite.accepted" in actions and "invite.created" in actions


async def test_only_owners_invite_owners(client_factory, app):
    org_id, owner, admin = await org_with_admin(client_factory, app)
    assert (await admin.call("POST", f"/v1/orgs/{org_id}/invites",
                             {"email": new_email(), "role": "owner"})).code == "forbidden"
    assert (await admin.call("POST", f"/v1/orgs/{org_id}/invites",
                             {"email": new_email(), "role": "admin"})).status == 201
    owner_invite = await owner.call("POST", f"/v1/orgs/{org_id}/invites", {"email": new_email(), "role": "owner"})
    assert owner_invite.status == 201
    # ...and only owners revoke an owner's invitation
    assert (await admin.call("DELETE", f"/v1/orgs/{org_id}/invites/{owner_invite.body['id']}")).code == "forbidden"
    assert (await owner.call("DELETE", f"/v1/orgs/{org_id}/invites/{owner_invite.body['id']}")).status == 204
    agent, agent_id, _ = await signed_in(client_factory, app)
    await add_member(app, org_id, agent_id, "agent")
    assert (await agent.call("POST", f"/v1/orgs/{org_id}/invites",
                             {"email": new_email(), "role": "agent"})).code == "forbidden"


async def test_duplicates_and_existing_members_conflict(client_factory, app):
    org_id, owner, admin = await org_with_admin(client_factory, app)
    email = new_email("dup")
    assert (await owner.call("POST", f"/v1/orgs/{org_id}/invites", {"email": email, "role": "agent"})).status == 201
    assert (await owner.call("POST", f"/v1/orgs/{org_id}/invites", {"email": email.upper(), "role": "admin"})).code == "conflict"
    assert (await owner.call("POST", f"/v1/orgs/{org_id}/invites", {"email": admin.email, "role": "agent"})).code == "conflict"


async def test_expired_and_revoked_invitations_do_not_work(client_factory, app):
    org_id, owner, admin = await org_with_admin(client_factory, app)
    expired_email, revoked_email = new_email("late"), new_email("revoked")
    late = await owner.call("POST", f"/v1/orgs/{org_id}/invites", {"email": expired_email, "role": "agent"})
    revoked = await owner.call("POST", f"/v1/orgs/{org_id}/invites", {"email": revoked_email, "role": "agent"})
    late_token = token_from(await wait_for_mail(app, expired_email, "invited"))
    revoked_token = token_from(await wait_for_mail(app, revoked_email, "invited"))
    async with scoped(app[keys.DB], org_id=org_id) as conn:
        await conn.execute("UPDATE invites SET expires_at = now() - interval '1 second' WHERE id = $1",
                           uuid.UUID(late.body["id"]))
    assert (await owner.call("DELETE", f"/v1/orgs/{org_id}/invites/{revoked.body['id']}")).status == 204
    assert (await owner.call("DELETE", f"/v1/orgs/{org_id}/invites/{revoked.body['id']}")).code == "not_found"
    for email, token in ((expired_email, late_token), (revoked_email, revoked_token)):
        c, _, _ = await signed_in(client_factory, app, email=email)
        assert (await c.call("POST", "/v1/invites/accept", {"token": token})).code == "token_invalid"
    statuses = {i["email"]: i["status"] for i in (await owner.call("GET", f"/v1/orgs/{org_id}/invites")).body["items"]}
    assert statuses[expired_email] == "expired" and statuses[revoked_email] == "revoked"
    # an expired invitation does not block a new one
    assert (await owner.call("POST", f"/v1/orgs/{org_id}/invites", {"email": expired_email, "role": "agent"})).status == 201


async def test_an_invitation_is_for_its_address_only(client_factory, app):
    org_id, owner, _ = await org_with_admin(client_factory, app)
    email = new_email("right")
    await owner.call("POST", f"/v1/orgs/{org_id}/invites", {"email": email, "role": "admin"})
    token = token_from(await wait_for_mail(app, email, "invited"))
    stranger, _, _ = await signed_in(client_factory, app)
    assert (await stranger.call("POST", "/v1/invites/accept", {"token": token})).code == "forbidden"
    right, _, _ = await signed_in(client_factory, app, email=email)
    assert (await right.call("POST", "/v1/invites/accept", {"token": token})).body["role"] == "admin"


async def test_unknown_tokens_answer_token_invalid(client):
    assert (await client.call("POST", "/v1/invites/inspect", {"token": "Z" * 43})).code == "token_invalid"
    assert (await client.call("POST", "/v1/invites/inspect", {"token": "short"})).code == "token_invalid"
