"""Agent availability over HTTP: the team's live states, a member's own choice, an admin's
"force offline", and the widget's "team online / away" with the business-hours reply time.

The state model lives in ``engine/availability.py``: a member's *choice* (Online / Busy /
Offline, ``members.availability``) counts only while they have an inbox socket open (plus the
grace period); every change is announced live to the organisation's sockets.  docs/workflow.md.
"""

from __future__ import annotations

import datetime as dt
import logging

import orjson
from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from admin_api import keys
from admin_api.call import Call
from admin_api.errors import ApiError
from admin_api.routing import RouteTable
from admin_api.schemas import Array, Boolean, Choice, DateTime, Nested, Schema, String, Uuid
from admin_api.throttle import Limit
from convot.db import scoped
from engine.assignment import hours_of
from engine.availability import STATES, TEAM_STATES, Presence, effective_state, set_choice, team_state
from engine.rules import reply_expectation

log = logging.getLogger("convot.admin_api.availability")

routes = RouteTable(tag="availability")

WIDGET_STATUS_IP = Limit("widget_status_ip", 300, 60)
APP_KEY_PATTERN = r"app_[A-Za-z0-9_-]{1,64}"
_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)


class MemberAvailability(Schema):
    user_id = Uuid()
    name = String()
    choice = Choice(*STATES, description="what the member chose")
    present = Boolean(description="has an inbox open (or closed it less than the grace period ago)")
    state = Choice(*STATES, description="what teammates and the widget see: the choice while present, else offline")


class ReplyTime(Schema):
    open = Boolean(description="inside business hours now (always, without a schedule)")
    scheduled = Boolean(description="business hours are set")
    timezone = String()
    next_open_at = DateTime(nullable=True)
    reply_time = Choice("minutes", "hours", description="minutes: open and someone online; else hours")


class TeamAvailability(Schema):
    team = Choice(*TEAM_STATES, description="online when at least one member is online")
    members = Array(Nested(MemberAvailability), max_items=10000)
    business_hours = Nested(ReplyTime)


class AvailabilityUpdate(Schema):
    state = Choice(*STATES, example="online")


class ForceOffline(Schema):
    state = Choice("offline", example="offline", description="an admin can only take a member offline")


class WidgetStatusQuery(Schema):
    app_id = String(pattern=APP_KEY_PATTERN, example="app_3f9c1b2a")


class WidgetStatus(Schema):
    """What the widget shows in its header: "Online" / "Away", and when to expect a reply."""

    team = Choice(*TEAM_STATES)
    open = Boolean()
    reply_time = Choice("minutes", "hours")
    next_open_at = DateTime(nullable=True)
    timezone = String()


def _presence(call: Call) -> Presence:
    return Presence(call.config, call.app[keys.REDIS], call.app[keys.DB])


def _reply_time(timezone: str, intervals, team: str) -> ReplyTime:
    hours = hours_of(timezone, intervals)
    r = reply_expectation(hours, dt.datetime.now(dt.timezone.utc), team == "online")
    return ReplyTime(open=r["open"], scheduled=r["scheduled"], timezone=r["timezone"],
                     next_open_at=dt.datetime.fromisoformat(r["next_open_at"]) if r["next_open_at"] else None,
                     reply_time=r["reply_time"])


async def _present(presence: Presence, org_id) -> set[str]:
    try:
        return await presence.present(org_id)
    except _REDIS_DOWN:
        raise ApiError("service_unavailable", headers={"Retry-After": "1"}) from None


async def _announce(presence: Presence, org_id, user_id) -> None:
    """After COMMIT: the change is stored; a Redis hiccup only delays what sockets show."""
    try:
        await presence.announce(org_id, [str(user_id)])
    except _REDIS_DOWN as exc:
        log.warning("availability change not announced live (%s)", type(exc).__name__)


async def _member_view(call: Call, presence: Presence, user_id) -> MemberAvailability:
    async with call.db() as conn:
        row = await conn.fetchrow("SELECT m.user_id, u.name, m.availability FROM members m "
                                  "JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 AND m.user_id = $2",
                                  call.org_id, user_id)
    present = str(user_id) in await _present(presence, call.org_id)
    return MemberAvailability(user_id=row["user_id"], name=row["name"] or "", choice=row["availability"],
                              present=present, state=effective_state(row["availability"], present))


@routes.route("GET", "/v1/orgs/{org_id}/availability", permission="team.read", response=TeamAvailability,
              summary="Every member's availability, the team's summary and the business-hours status")
async def team_availability(call: Call) -> TeamAvailability:
    presence = _presence(call)
    async with call.db() as conn:
        rows = await conn.fetch("SELECT m.user_id, u.name, m.availability FROM members m "
                                "JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 ORDER BY u.name, m.user_id",
                                call.org_id)
        org = await conn.fetchrow("SELECT timezone, business_hours FROM organisations WHERE id = $1", call.org_id)
    present = await _present(presence, call.org_id)
    members = [MemberAvailability(user_id=r["user_id"], name=r["name"] or "", choice=r["availability"],
                                  present=str(r["user_id"]) in present,
                                  state=effective_state(r["availability"], str(r["user_id"]) in present))
               for r in rows]
    team = team_state(m.state for m in members)
    return TeamAvailability(team=team, members=members,
                            business_hours=_reply_time(org["timezone"], org["business_hours"], team))


@routes.route("PUT", "/v1/orgs/{org_id}/availability", permission="team.read", body=AvailabilityUpdate,
              response=MemberAvailability, summary="Set your own availability (Online, Busy, Offline)",
              description="The same as the inbox socket's presence frame; announced live to the organisation.")
async def set_own_availability(call: Call) -> MemberAvailability:
    user = call.require_user().user_id
    presence = _presence(call)
    async with call.db() as conn:
        await set_choice(conn, call.org_id, user, call.body.state)
    await _announce(presence, call.org_id, user)
    return await _member_view(call, presence, user)


@routes.route("PUT", "/v1/orgs/{org_id}/members/{user_id}/availability", permission="team.manage", body=ForceOffline,
              response=MemberAvailability, summary="Force a member offline (admins; audited)",
              description="They receive no auto-assigned conversation until they choose Online again.")
async def force_offline(call: Call) -> MemberAvailability:
    target = call.path["user_id"]
    presence = _presence(call)
    async with call.db() as conn:
        previous = await set_choice(conn, call.org_id, target, "offline")
        if previous is None:
            raise ApiError("not_found")
        await call.audit(conn, "member.forced_offline", "member", target, {"from": previous})
    await _announce(presence, call.org_id, target)
    return await _member_view(call, presence, target)


@routes.route("GET", "/v1/widget/status", permission="public", query=WidgetStatusQuery, response=WidgetStatus,
              summary="The widget's header: team online / away and the expected reply time",
              description="Cross-origin for the app's allowed origins (like the widget session); throttled per IP.")
async def widget_status(call: Call) -> web.StreamResponse:
    await call.app[keys.THROTTLE].take((WIDGET_STATUS_IP, call.ip))
    pool = call.app[keys.DB]
    async with scoped(pool, app_key=call.query.app_id) as conn:
        app = await conn.fetchrow("SELECT org_id, allowed_origins FROM apps WHERE public_key = $1", call.query.app_id)
    if app is None:
        raise ApiError("not_found")
    origin = call.request.headers.get("Origin")
    if origin is not None and origin not in (app["allowed_origins"] or ()):
        raise ApiError("forbidden", "This origin may not use this app's widget.")
    presence = _presence(call)
    async with scoped(pool, org_id=app["org_id"]) as conn:
        org = await conn.fetchrow("SELECT timezone, business_hours FROM organisations WHERE id = $1", app["org_id"])
        try:
            team = await presence.team(conn, app["org_id"])
        except _REDIS_DOWN:
            raise ApiError("service_unavailable", headers={"Retry-After": "1"}) from None
    r = _reply_time(org["timezone"], org["business_hours"], team)
    status = WidgetStatus(team=team, open=r.open, reply_time=r.reply_time, next_open_at=r.next_open_at,
                          timezone=r.timezone)
    headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin else {"Vary": "Origin"}
    headers["Cache-Control"] = "no-store"
    return web.Response(body=orjson.dumps(status.dump()), content_type="application/json", headers=headers)
