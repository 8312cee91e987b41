"""Assignment settings: the default strategy, ordered auto-assign rules, business hours.

Reading is open to every member; changing is for admins and owners (``team.manage``), and
every change is audited in the same transaction.  Rules are validated by the pure rules of
``engine/rules.py`` (the same code the auto-assigner evaluates with), plus what only the
database knows: an ``assign`` action names a member, an ``app`` condition an app of this
organisation.  Changes lock the organisation row, like the auto-assigner does, so a decision
never sees half of a reorder.  docs/workflow.md.
"""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from admin_api.call import Call
from admin_api.errors import ApiError
from admin_api.routing import RouteTable
from admin_api.schemas import Array, Boolean, Choice, DateTime, Integer, Nested, Object, Schema, String, Uuid
from engine.assignment import hours_of
from engine.rules import STRATEGIES, RuleError, parse_business_hours, parse_rule

routes = RouteTable(tag="assignment")

EXAMPLE_RULE_CONDITIONS = [{"type": "keyword", "values": ["refund"]}]
EXAMPLE_RULE_ACTIONS = [{"type": "assign", "user_id": "0f8fad5b-d9cb-469f-a165-70867728950e"},
                        {"type": "add_tag", "tag": "refunds"}]


class AssignmentStrategy(Schema):
    strategy = Choice(*STRATEGIES, description="manual, round_robin or load_balanced (fewest open conversations), "
                                               "among online agents only")


class AssignmentStrategyUpdate(Schema):
    strategy = Choice(*STRATEGIES, example="round_robin")


class BusinessHoursInterval(Schema):
    """One weekly opening interval in the organisation's time zone."""

    day = Integer(minimum=0, maximum=6, description="0 = Monday ... 6 = Sunday", example=0)
    start = String(max_length=5, description="HH:MM", example="09:00")
    end = String(max_length=5, description="HH:MM, after start; 24:00 = end of the day", example="17:00")


class BusinessHoursUpdate(Schema):
    timezone = String(max_length=64, description="IANA time zone", example="Europe/Paris")
    intervals = Array(Nested(BusinessHoursInterval), max_items=50, description="empty = no schedule (always open)")


class BusinessHoursView(Schema):
    timezone = String()
    intervals = Array(Nested(BusinessHoursInterval), max_items=50)
    open = Boolean(description="inside business hours now")
    next_open_at = DateTime(nullable=True, description="when the next interval starts, while closed")


class AssignmentRuleCreate(Schema):
    name = String(min_length=1, max_length=200, example="Refunds to Dana")
    conditions = Array(Object(max_keys=3), max_items=10, default=[], example=EXAMPLE_RULE_CONDITIONS,
                       description="all must hold; empty = always. {type: app|channel|contact_tag|keyword, values: "
                                   "[...]} or {type: business_hours, value: inside|outside}")
    actions = Array(Object(max_keys=3), max_items=10, example=EXAMPLE_RULE_ACTIONS,
                    description="{type: assign, user_id} | {type: add_tag, tag} | {type: skip_assignment}")
    enabled = Boolean(default=True)
    position = Integer(minimum=1, required=False, description="1 = evaluated first; default: last")


class AssignmentRuleUpdate(Schema):
    name = String(min_length=1, max_length=200, required=False)
    conditions = Array(Object(max_keys=3), max_items=10, required=False)
    actions = Array(Object(max_keys=3), max_items=10, required=False)
    enabled = Boolean(required=False)


class AssignmentRule(Schema):
    id = Uuid()
    position = Integer(description="evaluation order: the first enabled rule that matches wins")
    name = String()
    conditions = Array(Object(), max_items=10)
    actions = Array(Object(), max_items=10)
    enabled = Boolean()
    created_at = DateTime()
    updated_at = DateTime()


class AssignmentRuleList(Schema):
    items = Array(Nested(AssignmentRule), max_items=1000)


class AssignmentRuleOrder(Schema):
    rule_ids = Array(Uuid(), max_items=1000, description="every rule of the organisation, in the new order")


class AssignmentSettings(Schema):
    strategy = Choice(*STRATEGIES)
    rules = Array(Nested(AssignmentRule), max_items=1000)
    business_hours = Nested(BusinessHoursView)


_RULE_COLUMNS = "id, position, name, conditions, actions, enabled, created_at, updated_at"


def _rule_view(row: asyncpg.Record) -> AssignmentRule:
    return AssignmentRule(id=row["id"], position=row["position"], name=row["name"], conditions=row["conditions"],
                    actions=row["actions"], enabled=row["enabled"], created_at=row["created_at"],
                    updated_at=row["updated_at"])


def _unprocessable(exc: RuleError) -> ApiError:
    return ApiError("unprocessable_entity", details={"field": exc.field, "reason": exc.reason})


def hours_view(timezone: str, intervals, now: dt.datetime | None = None) -> BusinessHoursView:
    hours = hours_of(timezone, intervals)
    now = now or dt.datetime.now(dt.timezone.utc)
    return BusinessHoursView(timezone=hours.timezone, intervals=[BusinessHoursInterval(**i) for i in hours.dump()],
                             open=hours.is_open(now), next_open_at=hours.next_open(now))


async def _lock_org(conn: asyncpg.Connection, org_id) -> asyncpg.Record:
    return await conn.fetchrow("SELECT assignment_strategy, timezone, business_hours FROM organisations "
                               "WHERE id = $1 FOR UPDATE", org_id)


async def _rules(conn: asyncpg.Connection, org_id) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {_RULE_COLUMNS} FROM assignment_rules WHERE org_id = $1 ORDER BY position",
                            org_id)


async def _validated(conn: asyncpg.Connection, org_id, conditions, actions):
    """The rule as stored (normalised), after the pure checks and the organisation's own."""
    try:
        rule = parse_rule(conditions, actions)
    except RuleError as exc:
        raise _unprocessable(exc) from None
    members = [(n, a.user_id) for n, a in enumerate(rule.actions) if a.type == "assign"]
    for n, user_id in members:
        found = await conn.fetchval("SELECT true FROM members WHERE org_id = $1 AND user_id = $2", org_id, user_id)
        if not found:
            raise ApiError("unprocessable_entity", details={"field": f"actions[{n}].user_id",
                                                            "reason": "is not a member of this organisation"})
    for n, c in enumerate(rule.conditions):
        if c.type != "app":
            continue
        known = {str(r["id"]) for r in await conn.fetch(
            "SELECT id FROM apps WHERE org_id = $1 AND id = ANY($2::uuid[])", org_id, list(c.values))}
        for m, app_id in enumerate(c.values):
            if app_id not in known:
                raise ApiError("unprocessable_entity", details={"field": f"conditions[{n}].values[{m}]",
                                                                "reason": "is not an app of this organisation"})
    return [c.dump() for c in rule.conditions], [a.dump() for a in rule.actions]


# ---- overview and strategy ------------------------------------------------------------------------

@routes.route("GET", "/v1/orgs/{org_id}/assignment", permission="team.read", response=AssignmentSettings,
              summary="Default strategy, rules in order and business hours")
async def get_assignment(call: Call) -> AssignmentSettings:
    async with call.db() as conn:
        org = await conn.fetchrow("SELECT assignment_strategy, timezone, business_hours FROM organisations "
                                  "WHERE id = $1", call.org_id)
        rules = await _rules(conn, call.org_id)
    return AssignmentSettings(strategy=org["assignment_strategy"], rules=[_rule_view(r) for r in rules],
                          business_hours=hours_view(org["timezone"], org["business_hours"]))


@routes.route("PUT", "/v1/orgs/{org_id}/assignment/strategy", permission="team.manage", body=AssignmentStrategyUpdate,
              response=AssignmentStrategy, summary="Set the default assignment strategy (audited)")
async def set_strategy(call: Call) -> AssignmentStrategy:
    async with call.db() as conn:
        org = await _lock_org(conn, call.org_id)
        if org["assignment_strategy"] != call.body.strategy:
            await conn.execute("UPDATE organisations SET assignment_strategy = $2 WHERE id = $1",
                               call.org_id, call.body.strategy)
            await call.audit(conn, "assignment.strategy_changed", "organisation", call.org_id,
                             {"from": org["assignment_strategy"], "to": call.body.strategy})
    return AssignmentStrategy(strategy=call.body.strategy)


# ---- business hours --------------------------------------------------------------------------------

@routes.route("GET", "/v1/orgs/{org_id}/business-hours", permission="team.read", response=BusinessHoursView,
              summary="Business hours (time zone and weekly intervals) and whether they are open now")
async def get_business_hours(call: Call) -> BusinessHoursView:
    async with call.db() as conn:
        org = await conn.fetchrow("SELECT timezone, business_hours FROM organisations WHERE id = $1", call.org_id)
    return hours_view(org["timezone"], org["business_hours"])


@routes.route("PUT", "/v1/orgs/{org_id}/business-hours", permission="team.manage", body=BusinessHoursUpdate,
              response=BusinessHoursView, summary="Replace the business hours (audited)")
async def set_business_hours(call: Call) -> BusinessHoursView:
    b = call.body
    raw = [i.dump() for i in b.intervals]
    try:
        hours = parse_business_hours(b.timezone, raw)
    except RuleError as exc:
        field = exc.field.replace("business_hours", "intervals", 1)
        raise ApiError("unprocessable_entity", details={"field": field, "reason": exc.reason}) from None
    async with call.db() as conn:
        org = await _lock_org(conn, call.org_id)
        await conn.execute("UPDATE organisations SET timezone = $2, business_hours = $3 WHERE id = $1",
                           call.org_id, hours.timezone, hours.dump())
        await call.audit(conn, "business_hours.changed", "organisation", call.org_id,
                         {"from": {"timezone": org["timezone"], "intervals": org["business_hours"]},
                          "to": {"timezone": hours.timezone, "intervals": hours.dump()}})
    return hours_view(hours.timezone, hours.dump())


# ---- rules -----------------------------------------------------------------------------------------

@routes.route("GET", "/v1/orgs/{org_id}/assignment/rules", permission="team.read", response=AssignmentRuleList,
              summary="Auto-assign rules in evaluation order")
async def list_rules(call: Call) -> AssignmentRuleList:
    async with call.db() as conn:
        return AssignmentRuleList(items=[_rule_view(r) for r in await _rules(conn, call.org_id)])


@routes.route("POST", "/v1/orgs/{org_id}/assignment/rules", permission="team.manage", body=AssignmentRuleCreate,
              response=AssignmentRule, status=201, summary="Add an auto-assign rule (audited)")
async def create_rule(call: Call) -> AssignmentRule:
    b = call.body
    async with call.db() as conn:
        await _lock_org(conn, call.org_id)
        count = await conn.fetchval("SELECT count(*) FROM assignment_rules WHERE org_id = $1", call.org_id)
        if count >= call.config.workflow.max_rules:
            raise ApiError("conflict", f"An organisation has at most {call.config.workflow.max_rules} rules.")
        conditions, actions = await _validated(conn, call.org_id, b.conditions, b.actions)
        position = min(b.position, count + 1) if b.is_set("position") else count + 1
        await conn.execute("UPDATE assignment_rules SET position = position + 1 WHERE org_id = $1 AND position >= $2",
                           call.org_id, position)
        row = await conn.fetchrow(
            f"INSERT INTO assignment_rules (org_id, position, name, conditions, actions, enabled) "
            f"VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_RULE_COLUMNS}",
            call.org_id, position, b.name, conditions, actions, b.enabled)
        await call.audit(conn, "assignment_rule.created", "assignment_rule", row["id"],
                         {"name": b.name, "position": position, "conditions": conditions, "actions": actions,
                          "enabled": b.enabled})
    return _rule_view(row)


async def _load_rule(conn: asyncpg.Connection, org_id, rule_id: uuid.UUID) -> asyncpg.Record:
    row = await conn.fetchrow(f"SELECT {_RULE_COLUMNS} FROM assignment_rules WHERE org_id = $1 AND id = $2",
                              org_id, rule_id)
    if row is None:
        raise ApiError("not_found")
    return row


@routes.route("GET", "/v1/orgs/{org_id}/assignment/rules/{rule_id}", permission="team.read", response=AssignmentRule,
              summary="One auto-assign rule")
async def get_rule(call: Call) -> AssignmentRule:
    async with call.db() as conn:
        return _rule_view(await _load_rule(conn, call.org_id, call.path["rule_id"]))


@routes.route("PATCH", "/v1/orgs/{org_id}/assignment/rules/{rule_id}", permission="team.manage", body=AssignmentRuleUpdate,
              response=AssignmentRule, summary="Change a rule's name, conditions, actions or enabled flag (audited)")
async def update_rule(call: Call) -> AssignmentRule:
    b, rule_id = call.body, call.path["rule_id"]
    async with call.db() as conn:
        await _lock_org(conn, call.org_id)
        row = await _load_rule(conn, call.org_id, rule_id)
        conditions, actions = await _validated(
            conn, call.org_id, b.conditions if b.is_set("conditions") else row["conditions"],
            b.actions if b.is_set("actions") else row["actions"])
        name = b.name if b.is_set("name") else row["name"]
        enabled = b.enabled if b.is_set("enabled") else row["enabled"]
        updated = await conn.fetchrow(
            f"UPDATE assignment_rules SET name = $3, conditions = $4, actions = $5, enabled = $6, updated_at = now() "
            f"WHERE org_id = $1 AND id = $2 RETURNING {_RULE_COLUMNS}",
            call.org_id, rule_id, name, conditions, actions, enabled)
        changes = {k: {"from": row[k], "to": v} for k, v in
                   (("name", name), ("conditions", conditions), ("actions", actions), ("enabled", enabled))
                   if row[k] != v}
        if changes:
            await call.audit(conn, "assignment_rule.updated", "assignment_rule", rule_id, changes)
    return _rule_view(updated)


@routes.route("DELETE", "/v1/orgs/{org_id}/assignment/rules/{rule_id}", permission="team.manage", status=204,
              summary="Delete a rule; the ones after it move up (audited)")
async def delete_rule(call: Call) -> None:
    rule_id = call.path["rule_id"]
    async with call.db() as conn:
        await _lock_org(conn, call.org_id)
        row = await _load_rule(conn, call.org_id, rule_id)
        await conn.execute("DELETE FROM assignment_rules WHERE org_id = $1 AND id = $2", call.org_id, rule_id)
        await conn.execute("UPDATE assignment_rules SET position = position - 1 WHERE org_id = $1 AND position > $2",
                           call.org_id, row["position"])
        await call.audit(conn, "assignment_rule.deleted", "assignment_rule", rule_id,
                         {"name": row["name"], "position": row["position"]})


@routes.route("PUT", "/v1/orgs/{org_id}/assignment/rule-order", permission="team.manage", body=AssignmentRuleOrder,
              response=AssignmentRuleList, summary="Reorder every rule at once (audited)")
async def reorder_rules(call: Call) -> AssignmentRuleList:
    wanted = [uuid.UUID(str(i)) for i in call.body.rule_ids]
    async with call.db() as conn:
        await _lock_org(conn, call.org_id)
        current = await _rules(conn, call.org_id)
        if len(set(wanted)) != len(wanted) or set(wanted) != {r["id"] for r in current}:
            raise ApiError("unprocessable_entity", details={"field": "rule_ids",
                                                            "reason": "must list every rule of the organisation once"})
        await conn.execute(
            "UPDATE assignment_rules r SET position = u.position, updated_at = now() "
            "FROM unnest($2::uuid[], $3::int[]) AS u(id, position) WHERE r.org_id = $1 AND r.id = u.id "
            "AND r.position <> u.position",
            call.org_id, wanted, list(range(1, len(wanted) + 1)))
        await call.audit(conn, "assignment_rules.reordered", "organisation", call.org_id,
                         {"from": [str(r["id"]) for r in current], "to": [str(i) for i in wanted]})
        rows = await _rules(conn, call.org_id)
    return AssignmentRuleList(items=[_rule_view(r) for r in rows])
