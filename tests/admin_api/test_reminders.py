"""Reminders and notifications over the real admin API, and a reminder set through the API firing
through the engine's reminder loop (note posted, notification stored and listed)."""

import asyncio
import datetime as dt
import uuid

import orjson
import pytest

from admin_api import keys
from convot.db import scoped
from convot.embedded import free_port
from engine.reminders import ReminderLoop
from tests.admin_api.conftest import add_member, make_org, signed_in


@pytest.fixture(scope="module")
def api_config(servers):
    return servers.config(smtp={"port": free_port()}, admin_api={"trusted_proxies": "127.0.0.1/32"},
                          workflow={"max_pending_reminders": 2})


@pytest.fixture
async def team(client_factory, app):
    owner, owner_id, _ = await signed_in(client_factory, app)
    org = await make_org(app, owner_id, "Reminder Org")
    agent, agent_id, _ = await signed_in(client_factory, app)
    await add_member(app, org, agent_id, "agent")
    other, other_id, _ = await signed_in(client_factory, app)
    await add_member(app, org, other_id, "agent")
    async with scoped(app[keys.DB], org_id=org) as conn:
        app_id = await conn.fetchval(
            "INSERT INTO apps (org_id, public_key, name, identity_secret_enc) VALUES ($1, $2, 'App', '\\x00') RETURNING id",
            org, f"app_{uuid.uuid4().hex[:20]}")
        contact = await conn.fetchval("INSERT INTO contacts (org_id) VALUES ($1) RETURNING id", org)
        conv = await conn.fetchval("INSERT INTO conversations (org_id, app_id, contact_id) VALUES ($1, $2, $3) "
                                   "RETURNING id", org, app_id, contact)
    return {"org": org, "owner": owner, "agent": agent, "agent_id": str(agent_id), "other": other,
            "conv": str(conv)}


def at(seconds: float) -> str:
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)).isoformat()


async def test_set_list_and_delete_reminders(team, app):
    org, conv, agent = team["org"], team["conv"], team["agent"]
    base = f"/v1/orgs/{org}/conversations/{conv}/reminders"
    first = await agent.call("POST", base, {"remind_at": at(3600), "note": "Check the refund"})
    assert first.status == 201, first.body
    assert (first.body["status"], first.body["user_id"], first.body["note"]) == ("pending", team["agent_id"],
                                                                                 "Check the refund")
    second = await agent.call("POST", base, {"remind_at": at(60)})
    assert second.status == 201 and second.body["note"] == ""
    # several per conversation, but a bounded number pending per member
    third = await agent.call("POST", base, {"remind_at": at(120)})
    assert (third.status, third.code) == (409, "conflict")
    theirs = await team["other"].call("POST", base, {"remind_at": at(90), "note": "mine"})
    assert theirs.status == 201
    on_conversation = await team["other"].call("GET", base)
    assert [r["id"] for r in on_conversation.body["items"]] == [second.body["id"], theirs.body["id"], first.body["id"]]
    mine = await agent.call("GET", f"/v1/orgs/{org}/reminders")
    assert [r["id"] for r in mine.body["items"]] == [second.body["id"], first.body["id"]]
    assert (await agent.call("GET", f"/v1/orgs/{org}/reminders?status=fired")).body["items"] == []
    # only your own (admins: anyone's, audited)
    refused = await agent.call("DELETE", f"/v1/orgs/{org}/reminders/{theirs.body['id']}")
    assert (refused.status, refused.code) == (403, "forbidden")
    assert (await agent.call("DELETE", f"/v1/orgs/{org}/reminders/{first.body['id']}")).status == 204
    assert (await team["owner"].call("DELETE", f"/v1/orgs/{org}/reminders/{theirs.body['id']}")).status == 204
    assert (await agent.call("DELETE", f"/v1/orgs/{org}/reminders/{first.body['id']}")).status == 404
    assert [r["id"] for r in (await team["owner"].call("GET", base)).body["items"]] == [second.body["id"]]
    async with scoped(app[keys.DB], org_id=org) as conn:
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE org_id = $1 AND action = 'reminder.deleted'",
                                   org) == 1


async def test_bad_times_and_unknown_conversations(team):
    org, conv, agent = team["org"], team["conv"], team["agent"]
    base = f"/v1/orgs/{org}/conversations/{conv}/reminders"
    for when in (at(-3600), at(400 * 86400)):
        answer = await agent.call("POST", base, {"remind_at": when})
        assert (answer.status, answer.body["error"]["details"]["field"]) == (422, "remind_at")
    naive = await agent.call("POST", base, {"remind_at": "2030-01-01T09:00:00"})
    assert (naive.status, naive.body["error"]["details"]["field"]) == (422, "remind_at")
    too_long = await agent.call("POST", base, {"remind_at": at(60), "note": "x" * 1001})
    assert (too_long.status, too_long.body["error"]["details"]["field"]) == (422, "note")
    unknown = await agent.call("POST", f"/v1/orgs/{org}/conversations/{uuid.uuid4()}/reminders", {"remind_at": at(60)})
    assert (unknown.status, unknown.code) == (404, "not_found")


async def test_a_reminder_set_through_the_api_fires_posts_a_note_and_notifies(team, app, api_config):
    org, conv, agent = team["org"], team["conv"], team["agent"]
    made = await agent.call("POST", f"/v1/orgs/{org}/conversations/{conv}/reminders",
                            {"remind_at": at(0.5), "note": "Ping the merchant"})
    assert made.status == 201
    assert (await agent.call("GET", f"/v1/orgs/{org}/notifications")).body == {"items": [], "unread": 0}
    loop = ReminderLoop(api_config, app[keys.DB], app[keys.REDIS], app[keys.ENGINE])
    fired = 0
    for _ in range(40):
        fired += await loop.poll()
        if fired:
            break
        await asyncio.sleep(0.1)
    assert fired == 1
    mine = await agent.call("GET", f"/v1/orgs/{org}/reminders?status=fired")
    [reminder] = mine.body["items"]
    assert (reminder["id"], reminder["status"], reminder["outcome"], reminder["message_seq"]) == (
        made.body["id"], "fired", "posted", 1)
    items, _ = await app[keys.ENGINE].history(str(org), conv)
    note = orjson.loads(items[-1])
    assert (note["type"], note["body"], note["seq"]) == ("note", "Reminder: Ping the merchant", 1)
    notes = await agent.call("GET", f"/v1/orgs/{org}/notifications")
    assert notes.body["unread"] == 1
    [n] = notes.body["items"]
    assert (n["kind"], n["conversation_id"], n["message_seq"], n["read_at"]) == ("reminder", conv, 1, None)
    # the other agent has none; reading clears the count
    assert (await team["other"].call("GET", f"/v1/orgs/{org}/notifications")).body["unread"] == 0
    read = await agent.call("POST", f"/v1/orgs/{org}/notifications/read", {"ids": [n["id"]]})
    assert read.status == 200 and read.body["unread"] == 0 and read.body["items"][0]["read_at"] is not None
    assert (await agent.call("GET", f"/v1/orgs/{org}/notifications?unread_only=true")).body["items"] == []
