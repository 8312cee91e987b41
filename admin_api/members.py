"""Members of an organisation: list, change role, per-member overrides, remove; your gateway token.

Who may do what is decided by the pure rules of ``permissions.py``.  A role change or a removal
bumps ``members.token_version``, ends every session of that person and publishes a control event
(``EngineClient.publish_control``: ``role_changed`` / ``member_removed``) so the gateways close
their sockets and refuse their older tokens, all at once.  The event is published before the
transaction commits: if Redis cannot take it, nothing changes and the caller gets 503.
"""

from __future__ import annotations

import uuid

import asyncpg

from admin_api import keys, permissions
from admin_api.call import Call
from admin_api.errors import ApiError
from admin_api.routing import RouteTable
from admin_api.schemas import Array, Boolean, Choice, DateTime, Integer, Nested, Schema, String, Uuid
from engine.errors import EngineError

routes = RouteTable(tag="members")


class Overrides(Schema):
    """Per-member access overrides: true grants, false withdraws, null returns to the role's default."""

    revenue = Boolean(required=False, nullable=True, example=True)
    reports = Boolean(required=False, nullable=True, example=False)


class MemberView(Schema):
    user_id = Uuid()
    email = String()
    name = String()
    role = String()
    overrides = Nested(Overrides)
    is_super_owner = Boolean()
    mfa_enabled = Boolean()
    availability = String()
    created_at = DateTime()


class MemberList(Schema):
    items = Array(Nested(MemberView))


class MemberUpdate(Schema):
    role = Choice(*permissions.ROLES, required=False, example="admin")
    overrides = Nested(Overrides, required=False)


_SELECT = """SELECT m.user_id, u.email, u.name, m.role, m.overrides, m.user_id = o.super_owner_id AS is_super_owner,
                    u.totp_enabled_at IS NOT NULL AS mfa_enabled, m.availability, m.created_at, m.token_version
             FROM members m JOIN users u ON u.id = m.user_id JOIN organisations o ON o.id = m.org_id"""


class GatewayToken(Schema):
    """A short-lived token for the inbox's websocket (send it in the first frame, never in a URL)."""

    token = String()
    expires_at = Integer(description="Unix time")
    url = String(description="the gateway's websocket URL")


async def cut_gateway_access(call: Call, org_id: uuid.UUID, user_id: uuid.UUID, kind: str, version: int) -> None:
    """Publish ``role_changed`` (older token versions die) or ``member_removed`` (every token dies)."""
    event = {"kind": kind, "org": str(org_id), "user": str(user_id)}
    if kind == "role_changed":
        event["version"] = version
    try:
        await call.app[keys.ENGINE].publish_control(event)
    except EngineError:
        raise ApiError("service_unavailable", "Could not reach the real-time service; nothing was changed.") from None


def _view(row: asyncpg.Record) -> MemberView:
    overrides = {k: v for k, v in (row["overrides"] or {}).items() if k in permissions.OVERRIDES}
    return MemberView(user_id=row["user_id"], email=row["email"], name=row["name"], role=row["role"],
                      overrides=Overrides(**overrides), is_super_owner=row["is_super_owner"],
                      mfa_enabled=row["mfa_enabled"], availability=row["availability"], created_at=row["created_at"])


def _rules(row: asyncpg.Record) -> permissions.Member:
    return permissions.Member(row["user_id"], row["role"], dict(row["overrides"] or {}), row["is_super_owner"])


async def _load(conn: asyncpg.Connection, org_id: uuid.UUID, user_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record:
    row = await conn.fetchrow(_SELECT + " WHERE m.org_id = $1 AND m.user_id = $2" + (" FOR UPDATE OF m" if lock else ""),
                              org_id, user_id)
    if row is None:
        raise ApiError("not_found")
    return row


@routes.route("GET", "/v1/orgs/{org_id}/members", permission="team.read", response=MemberList,
              summary="The organisation's members")
async def list_members(call: Call) -> MemberList:
    async with call.db() as conn:
        rows = await conn.fetch(_SELECT + " WHERE m.org_id = $1 ORDER BY m.created_at, m.user_id", call.org_id)
    return MemberList(items=[_view(r) for r in rows])


@routes.route("GET", "/v1/orgs/{org_id}/members/{user_id}", permission="team.read", response=MemberView,
              summary="One member")
async def get_member(call: Call) -> MemberView:
    async with call.db() as conn:
        return _view(await _load(conn, call.org_id, call.path["user_id"]))


@routes.route("PATCH", "/v1/orgs/{org_id}/members/{user_id}", permission="team.manage", body=MemberUpdate,
              response=MemberView, summary="Change a member's role and/or overrides",
              description="A role change takes effect on the member's next request and closes their gateway "
                          "sockets of this organisation at once (they reconnect with the new role); their "
                          "sign-in and their other organisations are untouched.")
async def update_member(call: Call) -> MemberView:
    b, target_id = call.body, call.path["user_id"]
    actor = call.member.rules
    async with call.db() as conn:
        row = await _load(conn, call.org_id, target_id, lock=True)
        target = _rules(row)
        if b.is_set("role") and b.role != row["role"]:
            denied = permissions.can_change_role(actor, target, b.role)
            if denied:
                raise ApiError(denied, "Your role cannot give or take this role." if denied == "forbidden" else None)
            version = await conn.fetchval(
                "UPDATE members SET role = $3, token_version = token_version + 1 WHERE org_id = $1 AND user_id = $2 "
                "RETURNING token_version", call.org_id, target_id, b.role)
            await call.audit(conn, "member.role_changed", "member", target_id, {"from": row["role"], "to": b.role})
            await cut_gateway_access(call, call.org_id, target_id, "role_changed", version)
            target = permissions.Member(target_id, b.role, target.overrides, target.is_super_owner)
        if b.is_set("overrides"):
            changes = {name: getattr(b.overrides, name) for name in permissions.OVERRIDES if b.overrides.is_set(name)}
            denied = permissions.can_set_overrides(actor, target, changes)
            if denied == "unprocessable_entity":
                raise ApiError(denied, details={"field": "overrides", "reason": "owners always have full access"})
            if denied:
                raise ApiError(denied, "You can only hand out access you have yourself.")
            merged = permissions.merge_overrides(row["overrides"] or {}, changes)
            await conn.execute("UPDATE members SET overrides = $3 WHERE org_id = $1 AND user_id = $2",
                               call.org_id, target_id, merged)
            await call.audit(conn, "member.overrides_changed", "member", target_id, {"overrides": merged})
        return _view(await _load(conn, call.org_id, target_id))


async def remove_member(call: Call, target_id: uuid.UUID, *, action: str) -> None:
    async with call.db() as conn:
        row = await _load(conn, call.org_id, target_id, lock=True)
        denied = permissions.can_remove(call.member.rules, _rules(row))
        if denied:
            raise ApiError(denied, "The organisation's creator cannot be removed." if row["is_super_owner"] else None)
        await conn.execute("DELETE FROM members WHERE org_id = $1 AND user_id = $2", call.org_id, target_id)
        await call.audit(conn, action, "member", target_id, {"role": row["role"]})
        await cut_gateway_access(call, call.org_id, target_id, "member_removed", row["token_version"] + 1)


@routes.route("DELETE", "/v1/orgs/{org_id}/members/{user_id}", permission="team.manage", status=204,
              summary="Remove a member (their sockets in this organisation close at once; their account, "
                      "sign-in and other organisations are untouched)")
async def delete_member(call: Call) -> None:
    await remove_member(call, call.path["user_id"], action="member.removed")


@routes.route("POST", "/v1/orgs/{org_id}/gateway-token", permission="conversations.read", response=GatewayToken,
              summary="A short-lived token for the inbox's websocket in this organisation",
              description="Carries your role and members.token_version: a role change or removal kills it.")
async def gateway_token(call: Call) -> GatewayToken:
    m = call.member
    token, expires = call.app[keys.TOKENS].member_token(call.org_id, call.user_id, m.role, m.token_version)
    return GatewayToken(token=token, expires_at=expires, url=call.config.admin_api.gateway_public_url)
