"""Invitations: by email, valid 7 days, single use.  Admins invite admins and agents; only
owners invite owners.  The invitee accepts while signed in with the invited address."""

from __future__ import annotations

import datetime as dt

import asyncpg

from admin_api import keys, mails, onetime, permissions
from admin_api.billing.routes import PLANS
from admin_api.billing.service import check_seat_available
from admin_api.call import Call
from admin_api.errors import ApiError
from admin_api.organisations import Organisation, organisation_view
from admin_api.routing import RouteTable
from admin_api.schemas import Array, Choice, DateTime, Nested, Schema, String, Uuid
from admin_api.throttle import Limit
from convot.db import set_scope

routes = RouteTable(tag="invites")

INVITE_TTL = dt.timedelta(days=7)
INVITES_PER_ORG = Limit("invite_org", 100, 3600)


class InviteCreate(Schema):
    email = String(format="email", example="ana@example.com")
    role = Choice(*permissions.ROLES, example="agent")


class Invite(Schema):
    id = Uuid()
    email = String()
    role = String()
    status = Choice("pending", "accepted", "revoked", "expired")
    invited_by = Uuid(nullable=True)
    expires_at = DateTime()
    created_at = DateTime()


class InviteList(Schema):
    items = Array(Nested(Invite))


class InviteToken(Schema):
    token = String(min_length=1, max_length=100, example="x" * 43)


class InvitePreview(Schema):
    organisation = String()
    email = String()
    role = String()
    expires_at = DateTime()


def _status(row) -> str:
    if row["accepted_at"] is not None:
        return "accepted"
    if row["revoked_at"] is not None:
        return "revoked"
    if row["expires_at"] <= dt.datetime.now(dt.timezone.utc):
        return "expired"
    return "pending"


def _view(row) -> Invite:
    return Invite(id=row["id"], email=row["email"], role=row["role"], status=_status(row), invited_by=row["invited_by"],
                  expires_at=row["expires_at"], created_at=row["created_at"])


_COLUMNS = "id, email, role, invited_by, expires_at, accepted_at, revoked_at, created_at"


@routes.route("POST", "/v1/orgs/{org_id}/invites", permission="team.manage", body=InviteCreate, response=Invite,
              status=201, summary="Invite someone by email (valid 7 days, single use)")
async def create_invite(call: Call) -> Invite:
    b = call.body
    denied = permissions.can_invite(call.member.rules, b.role)
    if denied:
        raise ApiError(denied, "Only owners can invite owners.")
    await call.app[keys.THROTTLE].take((INVITES_PER_ORG, str(call.org_id)))
    token, digest = onetime.new_token()
    try:
        async with call.db() as conn:
            member = await conn.fetchval(
                "SELECT 1 FROM members m JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 AND u.email = $2",
                call.org_id, b.email)
            if member:
                raise ApiError("conflict", "This person is already a member.")
            await conn.execute(
                """UPDATE invites SET revoked_at = now() WHERE org_id = $1 AND email = $2 AND accepted_at IS NULL
                   AND revoked_at IS NULL AND expires_at <= now()""", call.org_id, b.email)
            # the plan's seats: members + pending invites (docs/billing.md); locks the organisation row
            await check_seat_available(conn, call.org_id, call.app[PLANS])
            row = await conn.fetchrow(
                f"""INSERT INTO invites (org_id, email, role, token_hash, invited_by, expires_at)
                    VALUES ($1, $2, $3, $4, $5, now() + $6::interval) RETURNING {_COLUMNS}""",
                call.org_id, b.email, b.role, digest, call.user_id, INVITE_TTL)
            org_name = await conn.fetchval("SELECT name FROM organisations WHERE id = $1", call.org_id)
            await call.audit(conn, "invite.created", "invite", row["id"], {"role": b.role, "email": b.email})
    except asyncpg.UniqueViolationError:
        raise ApiError("conflict", "This address already has a pending invitation.") from None
    call.app[keys.OUTBOX].enqueue(mails.invite(call.config, b.email, org_name, b.role, token))
    return _view(row)


@routes.route("GET", "/v1/orgs/{org_id}/invites", permission="team.manage", response=InviteList,
              summary="Invitations of the organisation, newest first")
async def list_invites(call: Call) -> InviteList:
    async with call.db() as conn:
        rows = await conn.fetch(f"SELECT {_COLUMNS} FROM invites WHERE org_id = $1 ORDER BY created_at DESC LIMIT 500",
                                call.org_id)
    return InviteList(items=[_view(r) for r in rows])


@routes.route("DELETE", "/v1/orgs/{org_id}/invites/{invite_id}", permission="team.manage", status=204,
              summary="Revoke a pending invitation")
async def revoke_invite(call: Call) -> None:
    async with call.db() as conn:
        row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM invites WHERE org_id = $1 AND id = $2 FOR UPDATE",
                                  call.org_id, call.path["invite_id"])
        if row is None or _status(row) != "pending":
            raise ApiError("not_found")
        denied = permissions.can_revoke_invite(call.member.rules, row["role"])
        if denied:
            raise ApiError(denied, "Only owners can revoke an owner's invitation.")
        await conn.execute("UPDATE invites SET revoked_at = now() WHERE org_id = $1 AND id = $2",
                           call.org_id, row["id"])
        await call.audit(conn, "invite.revoked", "invite", row["id"], {"role": row["role"]})


async def _find(call: Call, conn: asyncpg.Connection, token: str) -> asyncpg.Record:
    row = None
    if onetime.well_formed(token):
        await set_scope(conn, invite_hash=onetime.token_hash(token))
        row = await conn.fetchrow(f"SELECT org_id, {_COLUMNS} FROM invites WHERE token_hash = $1",
                                  onetime.token_hash(token))
    if row is None or _status(row) != "pending":
        raise ApiError("token_invalid")
    return row


async def _guarded(call: Call, work):
    """Run ``work`` under the wrong-token throttle of this client IP."""
    throttle, limits = call.app[keys.THROTTLE], call.app[keys.LIMITS]
    await throttle.check((limits.token_ip, call.ip))
    try:
        return await work()
    except ApiError as exc:
        if exc.code == "token_invalid":
            await throttle.add((limits.token_ip, call.ip))
        raise


@routes.route("POST", "/v1/invites/inspect", permission="public", body=InviteToken, response=InvitePreview,
              summary="What an invitation link is for (organisation, address, role)")
async def inspect_invite(call: Call) -> InvitePreview:
    async def work() -> InvitePreview:
        async with call.db() as conn:
            row = await _find(call, conn, call.body.token)
            await set_scope(conn, org_id=row["org_id"])
            name = await conn.fetchval("SELECT name FROM organisations WHERE id = $1", row["org_id"])
        return InvitePreview(organisation=name, email=row["email"], role=row["role"], expires_at=row["expires_at"])

    return await _guarded(call, work)


@routes.route("POST", "/v1/invites/accept", permission="session", body=InviteToken, response=Organisation,
              summary="Accept an invitation sent to your address")
async def accept_invite(call: Call) -> Organisation:
    p = call.principal

    async def work() -> Organisation:
        async with call.db() as conn:
            row = await _find(call, conn, call.body.token)
            if row["email"].lower() != p.email.lower():
                raise ApiError("forbidden", "This invitation was sent to another email address.")
            org_id = row["org_id"]
            await set_scope(conn, org_id=org_id)
            taken = await conn.fetchval(
                """UPDATE invites SET accepted_at = now() WHERE org_id = $1 AND id = $2 AND accepted_at IS NULL
                   AND revoked_at IS NULL AND expires_at > now() RETURNING id""", org_id, row["id"])
            if taken is None:
                raise ApiError("token_invalid")
            added = await conn.fetchval(
                "INSERT INTO members (org_id, user_id, role) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1",
                org_id, p.user_id, row["role"])
            if added is None:
                raise ApiError("conflict", "You are already a member of this organisation.")
            await call.audit(conn, "invite.accepted", "invite", row["id"], {"role": row["role"]}, org_id=org_id)
            return await organisation_view(conn, org_id, p.user_id)

    return await _guarded(call, work)
