"""Assignment settings over the real admin API: strategy, business hours and ordered rules, who
may change them, validation with stable codes, the audit trail -- and a rule written through the
API steering the real auto-assigner."""

import uuid

import pytest

from admin_api import keys
from convot.db import scoped
from convot.embedded import free_port
from engine.assignment import Assigner
from engine.availability import Presence, set_choice
from tests.admin_api.conftest import add_member, make_org, signed_in


@pytest.fixture(scope="module")
def api_config(servers):
    return servers.config(smtp={"port": free_port()}, admin_api={"trusted_proxies": "127.0.0.1/32"},
                          workflow={"max_rules": 4})


@pytest.fixture
async def team(client_factory, app):
    owner, owner_id, _ = await signed_in(client_factory, app)
    org = await make_org(app, owner_id, "Workflow Org")
    admin, admin_id, _ = await signed_in(client_factory, app)
    await add_member(app, org, admin_id, "admin")
    agent, agent_id, _ = await signed_in(client_factory, app)
    await add_member(app, org, agent_id, "agent")
    return {"org": org, "owner": owner, "admin": admin, "admin_id": str(admin_id), "agent": agent,
            "agent_id": str(agent_id)}


async def audit_actions(app, org) -> list[tuple[str, dict]]:
    async with scoped(app[keys.DB], org_id=org) as conn:
        rows = await conn.fetch("SELECT action, details FROM audit_log WHERE org_id = $1 ORDER BY id", org)
    return [(r["action"], r["details"]) for r in rows]


async def test_defaults_and_who_may_change_the_strategy(team, app):
    org = team["org"]
    view = await team["agent"].call("GET", f"/v1/orgs/{org}/assignment")
    assert view.status == 200
    assert view.body["strategy"] == "manual" and view.body["rules"] == []
    assert view.body["business_hours"] == {"timezone": "UTC", "intervals": [], "open": True, "next_open_at": None}
    denied = await team["agent"].call("PUT", f"/v1/orgs/{org}/assignment/strategy", {"strategy": "round_robin"})
    assert (denied.status, denied.code) == (403, "forbidden")
    bad = await team["admin"].call("PUT", f"/v1/orgs/{org}/assignment/strategy", {"strategy": "random"})
    assert (bad.status, bad.body["error"]["details"]["field"]) == (422, "strategy")
    ok = await team["admin"].call("PUT", f"/v1/orgs/{org}/assignment/strategy", {"strategy": "load_balanced"})
    assert ok.status == 200 and ok.body == {"strategy": "load_balanced"}
    assert (await team["admin"].call("PUT", f"/v1/orgs/{org}/assignment/strategy",
                                     {"strategy": "load_balanced"})).status == 200    # no change: no audit entry
    assert [a for a in await audit_actions(app, org) if a[0] == "assignment.strategy_changed"] == [
        ("assignment.strategy_changed", {"from": "manual", "to": "load_balanced"})]


async def test_business_hours_round_trip_validation_and_audit(team, app):
    org, admin = team["org"], team["admin"]
    body = {"timezone": "America/New_York",
            "intervals": [{"day": d, "start": "09:00", "end": "17:00"} for d in (4, 0, 1, 2, 3)]}
    answer = await admin.call("PUT", f"/v1/orgs/{org}/business-hours", body)
    assert answer.status == 200, answer.body
    assert [i["day"] for i in answer.body["intervals"]] == [0, 1, 2, 3, 4]
    assert answer.body["open"] in (True, False)
    if not answer.body["open"]:
        assert answer.body["next_open_at"] is not None
    got = await team["agent"].call("GET", f"/v1/orgs/{org}/business-hours")
    assert got.body == answer.body
    for bad, field in (({"timezone": "Mars/Olympus", "intervals": []}, "timezone"),
                       ({"timezone": "UTC", "intervals": [{"day": 1, "start": "18:00", "end": "08:00"}]},
                        "intervals[0].end"),
                       ({"timezone": "UTC", "intervals": [{"day": 9, "start": "08:00", "end": "18:00"}]},
                        "intervals[0].day"),
                       ({"timezone": "UTC", "intervals": [{"day": 1, "start": "8h", "end": "18:00"}]},
                        "intervals[0].start")):
        refused = await admin.call("PUT", f"/v1/orgs/{org}/business-hours", bad)
        assert (refused.status, refused.body["error"]["details"]["field"]) == (422, field), refused.body
    assert (await team["agent"].call("PUT", f"/v1/orgs/{org}/business-hours", body)).status == 403
    changed = [d for a, d in await audit_actions(app, org) if a == "business_hours.changed"]
    assert len(changed) == 1 and changed[0]["to"]["timezone"] == "America/New_York"


async def test_rules_are_created_ordered_edited_and_deleted_with_an_audit_trail(team, app):
    org, admin, agent_id = team["org"], team["admin"], team["agent_id"]
    base = f"/v1/orgs/{org}/assignment/rules"
    refund = await admin.call("POST", base, {
        "name": "Refunds to the agent", "conditions": [{"type": "keyword", "values": [" Refund "]}],
        "actions": [{"type": "assign", "user_id": agent_id}, {"type": "add_tag", "tag": "Refunds"}]})
    assert refund.status == 201, refund.body
    assert refund.body["position"] == 1 and refund.body["enabled"]
    assert refund.body["conditions"] == [{"type": "keyword", "values": ["refund"]}]          # normalised
    assert refund.body["actions"][1] == {"type": "add_tag", "tag": "refunds"}
    night = await admin.call("POST", base, {"name": "Nights: skip", "position": 1,
                                            "conditions": [{"type": "business_hours", "value": "outside"}],
                                            "actions": [{"type": "skip_assignment"}]})
    assert night.body["position"] == 1
    listed = await team["agent"].call("GET", base)
    assert [r["name"] for r in listed.body["items"]] == ["Nights: skip", "Refunds to the agent"]
    assert [r["position"] for r in listed.body["items"]] == [1, 2]
    # reorder: must name every rule once
    reordered = await admin.call("PUT", f"/v1/orgs/{org}/assignment/rule-order",
                                 {"rule_ids": [refund.body["id"], night.body["id"]]})
    assert [r["name"] for r in reordered.body["items"]] == ["Refunds to the agent", "Nights: skip"]
    partial = await admin.call("PUT", f"/v1/orgs/{org}/assignment/rule-order", {"rule_ids": [refund.body["id"]]})
    assert (partial.status, partial.body["error"]["details"]["field"]) == (422, "rule_ids")
    # edit
    patched = await admin.call("PATCH", f"{base}/{night.body['id']}", {"enabled": False, "name": "Nights"})
    assert patched.status == 200 and not patched.body["enabled"] and patched.body["name"] == "Nights"
    assert patched.body["actions"] == [{"type": "skip_assignment"}]
    assert (await team["agent"].call("PATCH", f"{base}/{night.body['id']}", {"enabled": True})).status == 403
    # delete: the rest move up
    assert (await admin.call("DELETE", f"{base}/{refund.body['id']}")).status == 204
    after = await admin.call("GET", base)
    assert [(r["name"], r["position"]) for r in after.body["items"]] == [("Nights", 1)]
    assert (await admin.call("GET", f"{base}/{refund.body['id']}")).status == 404
    assert (await admin.call("DELETE", f"{base}/{uuid.uuid4()}")).status == 404
    actions = [a for a, _ in await audit_actions(app, org) if a.startswith("assignment_rule")]
    assert actions == ["assignment_rule.created", "assignment_rule.created", "assignment_rules.reordered",
                       "assignment_rule.updated", "assignment_rule.deleted"]
    updated = [d for a, d in await audit_actions(app, org) if a == "assignment_rule.updated"][0]
    assert updated == {"name": {"from": "Nights: skip", "to": "Nights"}, "enabled": {"from": True, "to": False}}


async def test_invalid_rules_answer_422_naming_the_field(team, client_factory, app):
    org, admin = team["org"], team["admin"]
    outsider, outsider_id, _ = await signed_in(client_factory, app)
    other_org = await make_org(app, outsider_id, "Other")
    async with scoped(app[keys.DB], org_id=other_org) as conn:
        foreign_app = await conn.fetchval(
            "INSERT INTO apps (org_id, public_key, name, identity_secret_enc) VALUES ($1, $2, 'X', '\\x00') RETURNING id",
            other_org, f"app_{uuid.uuid4().hex[:20]}")
    cases = [
        ({"conditions": [{"type": "moon", "values": ["x"]}], "actions": [{"type": "skip_assignment"}]},
         "conditions[0].type"),
        ({"conditions": [], "actions": [{"type": "assign", "user_id": str(outsider_id)}]}, "actions[0].user_id"),
        ({"conditions": [{"type": "app", "values": [str(foreign_app)]}], "actions": [{"type": "skip_assignment"}]},
         "conditions[0].values[0]"),
        ({"conditions": [], "actions": []}, "actions"),
        ({"conditions": [], "actions": [{"type": "skip_assignment"}, {"type": "assign", "user_id": team["agent_id"]}]},
         "actions"),
    ]
    for body, field in cases:
        answer = await admin.call("POST", f"/v1/orgs/{org}/assignment/rules", {"name": "r", **body})
        assert (answer.status, answer.code, answer.body["error"]["details"]["field"]) == (
            422, "unprocessable_entity", field), (body, answer.body)
    missing_name = await admin.call("POST", f"/v1/orgs/{org}/assignment/rules", {"actions": [{"type": "skip_assignment"}]})
    assert (missing_name.status, missing_name.body["error"]["details"]["field"]) == (422, "name")
    assert (await admin.call("GET", f"/v1/orgs/{org}/assignment/rules")).body["items"] == []


async def test_an_organisation_has_at_most_max_rules(team):
    org, admin = team["org"], team["admin"]
    for i in range(4):
        assert (await admin.call("POST", f"/v1/orgs/{org}/assignment/rules",
                                 {"name": f"r{i}", "actions": [{"type": "skip_assignment"}]})).status == 201
    over = await admin.call("POST", f"/v1/orgs/{org}/assignment/rules",
                            {"name": "r5", "actions": [{"type": "skip_assignment"}]})
    assert (over.status, over.code) == (409, "conflict")


async def test_a_rule_made_through_the_api_steers_the_auto_assigner(team, app, api_config):
    """The API stores exactly what the engine evaluates: keyword refund -> the agent."""
    org, admin, agent_id = team["org"], team["admin"], team["agent_id"]
    assert (await admin.call("PUT", f"/v1/orgs/{org}/assignment/strategy", {"strategy": "round_robin"})).status == 200
    rule = await admin.call("POST", f"/v1/orgs/{org}/assignment/rules", {
        "name": "Refunds", "conditions": [{"type": "keyword", "values": ["refund"]}],
        "actions": [{"type": "assign", "user_id": agent_id}]})
    assert rule.status == 201
    pool, redis, engine = app[keys.DB], app[keys.REDIS], app[keys.ENGINE]
    presence = Presence(api_config, redis, pool)
    async with scoped(pool, org_id=org) as conn:
        await set_choice(conn, org, agent_id, "online")
        await set_choice(conn, org, team["admin_id"], "online")
        app_id = await conn.fetchval(
            "INSERT INTO apps (org_id, public_key, name, identity_secret_enc) VALUES ($1, $2, 'App', '\\x00') RETURNING id",
            org, f"app_{uuid.uuid4().hex[:20]}")
        contact = await conn.fetchval("INSERT INTO contacts (org_id) VALUES ($1) RETURNING id", org)
    await presence.set_entries(str(org), [(agent_id, "t", 600_000, "c"), (team["admin_id"], "t", 600_000, "c")])
    assigner = Assigner(api_config, pool, redis, engine, presence, group=f"api-{uuid.uuid4().hex[:8]}")
    await assigner.setup()
    conv = (await engine.start_conversation(str(org), str(contact), str(app_id),
                                            body="Can I get a refund?")).conversation_id
    while await assigner.step(block_ms=100):
        pass
    assert (await engine.conversation(str(org), conv)).assignee_id == agent_id
