"""Audit trail: administrative actions (``audit_log``, per organisation) and authentication
events (``auth_events``, per user).  Both tables are append-only for the services' role (no
UPDATE/DELETE grant); rows are written in the same transaction as the change they describe.
Details never hold secrets or message bodies.
"""

from __future__ import annotations

import ipaddress
import uuid

import asyncpg

from admin_api.call import Call
from admin_api.principal import Principal
from admin_api.routing import RouteTable
from admin_api.schemas import Array, Boolean, DateTime, Integer, Nested, Object, Schema, String, Uuid

routes = RouteTable(tag="audit")


def _inet(ip: str | None):
    try:
        return ipaddress.ip_address(ip) if ip else None
    except ValueError:
        return None


async def record(conn: asyncpg.Connection, *, org_id: uuid.UUID, principal: Principal | None, action: str,
                 target_type: str | None, target_id: object, ip: str | None, user_agent: str,
                 details: dict | None) -> None:
    if principal is None:
        actor_kind, actor_id = "system", None
    elif principal.kind == "api_key":
        actor_kind, actor_id = "api_key", None
        details = {**(details or {}), "api_key_id": principal.api_key_id}
    else:
        actor_kind, actor_id = "user", principal.user_id
    await conn.execute(
        """INSERT INTO audit_log (org_id, actor_id, actor_kind, action, target_type, target_id, ip, user_agent, details)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        org_id, actor_id, actor_kind, action, target_type, None if target_id is None else str(target_id),
        _inet(ip), user_agent[:512], details or {})


async def record_auth_event(conn: asyncpg.Connection, *, user_id: uuid.UUID | None, event: str, success: bool,
                            ip: str | None, user_agent: str, details: dict | None = None) -> None:
    await conn.execute(
        "INSERT INTO auth_events (user_id, event, success, ip, user_agent, details) VALUES ($1, $2, $3, $4, $5, $6)",
        user_id, event, success, _inet(ip), user_agent[:512], details or {})


class AuditEntry(Schema):
    """One administrative action."""

    id = Integer()
    actor_id = Uuid(nullable=True)
    actor_kind = String()
    action = String(example="member.role_changed")
    target_type = String(nullable=True)
    target_id = String(nullable=True)
    ip = String(nullable=True)
    user_agent = String()
    details = Object()
    created_at = DateTime()


class AuditPage(Schema):
    items = Array(Nested(AuditEntry), max_items=200)
    next_before = Integer(nullable=True, description="pass as `before` for the next (older) page")


class AuditQuery(Schema):
    action = String(required=False, max_length=100)
    actor_id = Uuid(required=False)
    target_type = String(required=False, max_length=100)
    target_id = String(required=False, max_length=200)
    since = DateTime(required=False)
    until = DateTime(required=False)
    before = Integer(required=False, minimum=1, description="only entries with a smaller id (paging)")
    limit = Integer(default=50, minimum=1, maximum=200)


class AuthEventEntry(Schema):
    """One authentication event (sign-in, MFA, password reset...)."""

    id = Integer()
    user_id = Uuid(nullable=True)
    event = String(example="login")
    success = Boolean()
    ip = String(nullable=True)
    user_agent = String()
    details = Object()
    created_at = DateTime()


class AuthEventPage(Schema):
    items = Array(Nested(AuthEventEntry), max_items=200)
    next_before = Integer(nullable=True)


class AuthEventQuery(Schema):
    user_id = Uuid(required=False)
    event = String(required=False, max_length=100)
    success = Boolean(required=False)
    since = DateTime(required=False)
    until = DateTime(required=False)
    before = Integer(required=False, minimum=1)
    limit = Integer(default=50, minimum=1, maximum=200)


def _filters(q, columns: dict[str, str], conds: list[str], args: list) -> None:
    """Append ``column = $n`` conditions for every filter the client set (values as parameters)."""
    for name, column in columns.items():
        if q.is_set(name):
            args.append(getattr(q, name))
            conds.append(f"{column} ${len(args)}")


def _page(rows, limit: int, schema):
    items = [schema(**{k: (str(v) if k == "ip" and v is not None else v) for k, v in dict(r).items()})
             for r in rows[:limit]]
    return items, (rows[limit - 1]["id"] if len(rows) > limit else None)


@routes.route("GET", "/v1/orgs/{org_id}/audit", permission="audit.read", query=AuditQuery, response=AuditPage,
              summary="The organisation's audit log, newest first, with filters")
async def list_audit(call: Call) -> AuditPage:
    q = call.query
    conds, args = ["org_id = $1"], [call.org_id]
    _filters(q, {"action": "action =", "actor_id": "actor_id =", "target_type": "target_type =",
                 "target_id": "target_id =", "since": "created_at >=", "until": "created_at <",
                 "before": "id <"}, conds, args)
    args.append(q.limit + 1)
    async with call.db() as conn:
        rows = await conn.fetch(
            "SELECT id, actor_id, actor_kind, action, target_type, target_id, host(ip) AS ip, user_agent, details, "
            f"created_at FROM audit_log WHERE {' AND '.join(conds)} ORDER BY id DESC LIMIT ${len(args)}", *args)
    items, after = _page(rows, q.limit, AuditEntry)
    return AuditPage(items=items, next_before=after)


async def _auth_events(call: Call, conds: list[str], args: list) -> AuthEventPage:
    q = call.query
    _filters(q, {"user_id": "e.user_id =", "event": "e.event =", "success": "e.success =",
                 "since": "e.created_at >=", "until": "e.created_at <", "before": "e.id <"}, conds, args)
    args.append(q.limit + 1)
    async with call.db() as conn:
        rows = await conn.fetch(
            "SELECT e.id, e.user_id, e.event, e.success, host(e.ip) AS ip, e.user_agent, e.details, e.created_at "
            f"FROM auth_events e WHERE {' AND '.join(conds)} ORDER BY e.id DESC LIMIT ${len(args)}", *args)
    items, after = _page(rows, q.limit, AuthEventEntry)
    return AuthEventPage(items=items, next_before=after)


@routes.route("GET", "/v1/orgs/{org_id}/auth-events", permission="audit.read", query=AuthEventQuery,
              response=AuthEventPage, summary="Authentication events of the organisation's members")
async def list_member_auth_events(call: Call) -> AuthEventPage:
    return await _auth_events(
        call, ["e.user_id IN (SELECT m.user_id FROM members m WHERE m.org_id = $1)"], [call.org_id])


@routes.route("GET", "/v1/me/auth-events", permission="session", query=AuthEventQuery, response=AuthEventPage,
              summary="Your own authentication events")
async def list_my_auth_events(call: Call) -> AuthEventPage:
    return await _auth_events(call, ["e.user_id = $1"], [call.user_id])
