"""Availability over the real admin API: a member's own choice, the team's live view, an admin's
"force offline" (audited), live announcements, and the widget's team / reply-time status."""

import datetime as dt
import uuid
from zoneinfo import ZoneInfo

import pytest

from admin_api import keys
from convot.db import scoped
from engine.availability import Presence
from tests.admin_api.conftest import add_member, make_org, signed_in
from tests.engine.listener import Listener

ORIGIN = "https://shop.example"


@pytest.fixture
async def team(client_factory, app):
    owner, owner_id, _ = await signed_in(client_factory, app)
    org = await make_org(app, owner_id, "Availability Org")
    admin, admin_id, _ = await signed_in(client_factory, app)
    await add_member(app, org, admin_id, "admin")
    agent, agent_id, _ = await signed_in(client_factory, app)
    await add_member(app, org, agent_id, "agent")
    public_key = f"app_{uuid.uuid4().hex[:20]}"
    async with scoped(app[keys.DB], org_id=org) as conn:
        await conn.execute("INSERT INTO apps (org_id, public_key, name, identity_secret_enc, allowed_origins) "
                           "VALUES ($1, $2, 'Shop app', '\\x00', $3)", org, public_key, [ORIGIN])
    return {"org": org, "owner": owner, "owner_id": str(owner_id), "admin": admin, "agent": agent,
            "agent_id": str(agent_id), "app_key": public_key}


def presence_of(app, api_config) -> Presence:
    return Presence(api_config, app[keys.REDIS], app[keys.DB])


async def test_own_choice_counts_only_with_an_inbox_open(team, app, api_config):
    org, agent = team["org"], team["agent"]
    chosen = await agent.call("PUT", f"/v1/orgs/{org}/availability", {"state": "online"})
    assert chosen.status == 200, chosen.body
    assert (chosen.body["choice"], chosen.body["present"], chosen.body["state"]) == ("online", False, "offline")
    view = await team["owner"].call("GET", f"/v1/orgs/{org}/availability")
    assert view.body["team"] == "away"
    await presence_of(app, api_config).set_entries(str(org), [(team["agent_id"], "inbox-1", 600_000, "c")])
    view = await team["owner"].call("GET", f"/v1/orgs/{org}/availability")
    states = {m["user_id"]: (m["choice"], m["present"], m["state"]) for m in view.body["members"]}
    assert states[team["agent_id"]] == ("online", True, "online")
    assert states[team["owner_id"]] == ("offline", False, "offline")
    assert view.body["team"] == "online"
    assert view.body["business_hours"]["reply_time"] == "minutes" and view.body["business_hours"]["open"]
    busy = await agent.call("PUT", f"/v1/orgs/{org}/availability", {"state": "busy"})
    assert busy.body["state"] == "busy"
    assert (await team["owner"].call("GET", f"/v1/orgs/{org}/availability")).body["team"] == "away"
    bad = await agent.call("PUT", f"/v1/orgs/{org}/availability", {"state": "lunch"})
    assert (bad.status, bad.body["error"]["details"]["field"]) == (422, "state")


async def test_changes_are_announced_live_to_the_organisation(team, app, api_config, redis_client):
    org, agent = team["org"], team["agent"]
    await presence_of(app, api_config).set_entries(str(org), [(team["agent_id"], "inbox-2", 600_000, "c")])
    async with Listener(redis_client, api_config, str(org)) as listener:
        assert (await agent.call("PUT", f"/v1/orgs/{org}/availability", {"state": "online"})).status == 200
        frames = await listener.frames(0.5)
    assert [(aud, f["subject"], f["state"]) for aud, f in frames] == [
        (b"o", {"kind": "member", "id": team["agent_id"]}, "online"), (b"o", {"kind": "team"}, "online")]


async def test_an_admin_can_force_a_member_offline_and_it_is_audited(team, app, api_config, redis_client):
    org = team["org"]
    await team["agent"].call("PUT", f"/v1/orgs/{org}/availability", {"state": "online"})
    await presence_of(app, api_config).set_entries(str(org), [(team["agent_id"], "inbox-3", 600_000, "c")])
    path = f"/v1/orgs/{org}/members/{team['agent_id']}/availability"
    denied = await team["agent"].call("PUT", f"/v1/orgs/{org}/members/{team['owner_id']}/availability",
                                      {"state": "offline"})
    assert (denied.status, denied.code) == (403, "forbidden")
    only_offline = await team["admin"].call("PUT", path, {"state": "online"})
    assert only_offline.status == 422
    async with Listener(redis_client, api_config, str(org)) as listener:
        forced = await team["admin"].call("PUT", path, {"state": "offline"})
        frames = await listener.frames(0.5)
    assert forced.status == 200 and (forced.body["choice"], forced.body["state"]) == ("offline", "offline")
    assert ({"kind": "member", "id": team["agent_id"]}, "offline") in [(f["subject"], f["state"]) for _, f in frames]
    assert (await team["admin"].call("PUT", f"/v1/orgs/{org}/members/{uuid.uuid4()}/availability",
                                     {"state": "offline"})).status == 404
    async with scoped(app[keys.DB], org_id=org) as conn:
        audit = await conn.fetch("SELECT action, target_id, details FROM audit_log WHERE org_id = $1 "
                                 "AND action = 'member.forced_offline'", org)
    assert [(r["target_id"], r["details"]) for r in audit] == [(team["agent_id"], {"from": "online"})]


async def test_widget_status_shows_team_and_reply_time(team, app, api_config, client):
    org, key = team["org"], team["app_key"]
    away = await client.call("GET", f"/v1/widget/status?app_id={key}", headers={"Origin": ORIGIN})
    assert away.status == 200, away.body
    assert away.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert (away.body["team"], away.body["open"], away.body["reply_time"]) == ("away", True, "hours")
    await team["agent"].call("PUT", f"/v1/orgs/{org}/availability", {"state": "online"})
    await presence_of(app, api_config).set_entries(str(org), [(team["agent_id"], "inbox-4", 600_000, "c")])
    online = await client.call("GET", f"/v1/widget/status?app_id={key}", headers={"Origin": ORIGIN})
    assert (online.body["team"], online.body["reply_time"]) == ("online", "minutes")
    # Outside business hours (open only on a day three days from today there): "we reply in a few hours".
    today = dt.datetime.now(ZoneInfo("Pacific/Kiritimati")).weekday()
    await team["admin"].call("PUT", f"/v1/orgs/{org}/business-hours", {
        "timezone": "Pacific/Kiritimati", "intervals": [{"day": (today + 3) % 7, "start": "09:00", "end": "17:00"}]})
    closed = await client.call("GET", f"/v1/widget/status?app_id={key}")
    assert (closed.body["open"], closed.body["reply_time"], closed.body["timezone"]) == (False, "hours",
                                                                                     "Pacific/Kiritimati")
    assert closed.body["next_open_at"] is not None and "Access-Control-Allow-Origin" not in closed.headers
    foreign = await client.call("GET", f"/v1/widget/status?app_id={key}", headers={"Origin": "https://evil.example"})
    assert (foreign.status, foreign.code) == (403, "forbidden")
    unknown = await client.call("GET", f"/v1/widget/status?app_id=app_{uuid.uuid4().hex[:20]}")
    assert (unknown.status, unknown.code) == (404, "not_found")
    malformed = await client.call("GET", "/v1/widget/status?app_id=not-an-app")
    assert malformed.status == 422
    assert str(org) not in str(online.body) and team["agent_id"] not in str(online.body)
