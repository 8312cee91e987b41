"""Organisations: create (the creator becomes its super-owner), read, rename, require MFA,
delete (super-owner only, after a grace period), restore, leave."""

from __future__ import annotations

import uuid

import asyncpg

from admin_api.call import Call
from admin_api.errors import ApiError
from admin_api.members import remove_member
from admin_api.permissions import Member, effective_permissions
from admin_api.routing import RouteTable
from admin_api.schemas import Array, Boolean, DateTime, Nested, Schema, String, Uuid
from convot.db import set_scope

routes = RouteTable(tag="organisations")

MAX_ORGANISATIONS_PER_USER = 50


class Organisation(Schema):
    """An organisation, as seen by one of its members."""

    id = Uuid()
    name = String()
    role = String(description="your role")
    is_super_owner = Boolean(description="you created it: you alone may delete it")
    super_owner_id = Uuid()
    require_mfa = Boolean()
    permissions = Array(String(), description="what you may do here")
    created_at = DateTime()
    deletion_scheduled_at = DateTime(nullable=True, description="purged after this moment unless restored")


class OrganisationList(Schema):
    items = Array(Nested(Organisation))


class OrganisationCreate(Schema):
    name = String(min_length=1, max_length=200, example="Acme Apps")


class OrganisationUpdate(Schema):
    name = String(min_length=1, max_length=200, example="Acme Apps")


class RequireMfa(Schema):
    require_mfa = Boolean(description="every member must use two-factor authentication")


def _view(row: asyncpg.Record, user_id: uuid.UUID) -> Organisation:
    is_super = row["super_owner_id"] == user_id
    rules = Member(user_id, row["role"], dict(row["overrides"] or {}), is_super)
    return Organisation(id=row["id"], name=row["name"], role=row["role"], is_super_owner=is_super,
                        super_owner_id=row["super_owner_id"], require_mfa=row["require_mfa"],
                        permissions=sorted(effective_permissions(rules)), created_at=row["created_at"],
                        deletion_scheduled_at=row["deletion_scheduled_at"])


_COLUMNS = """SELECT o.id, o.name, o.super_owner_id, o.require_mfa, o.created_at, o.deletion_scheduled_at,
                     m.role, m.overrides
              FROM organisations o JOIN members m ON m.org_id = o.id"""


async def organisation_view(conn: asyncpg.Connection, org_id: uuid.UUID, user_id: uuid.UUID) -> Organisation:
    row = await conn.fetchrow(_COLUMNS + " WHERE o.id = $1 AND m.user_id = $2", org_id, user_id)
    if row is None:
        raise ApiError("not_found")
    return _view(row, user_id)


@routes.route("POST", "/v1/orgs", permission="session", body=OrganisationCreate, response=Organisation, status=201,
              summary="Create an organisation; you become its super-owner")
async def create_organisation(call: Call) -> Organisation:
    org_id = uuid.uuid4()
    async with call.db() as conn:
        count = await conn.fetchval("SELECT count(*) FROM members WHERE user_id = $1", call.user_id)
        if count >= MAX_ORGANISATIONS_PER_USER:
            raise ApiError("conflict", f"You belong to {count} organisations already, the most allowed.")
        await set_scope(conn, org_id=org_id)
        await conn.execute("INSERT INTO organisations (id, name, super_owner_id) VALUES ($1, $2, $3)",
                           org_id, call.body.name, call.user_id)
        await conn.execute("INSERT INTO members (org_id, user_id, role) VALUES ($1, $2, 'owner')", org_id, call.user_id)
        await call.audit(conn, "org.created", "organisation", org_id, {"name": call.body.name}, org_id=org_id)
        return await organisation_view(conn, org_id, call.user_id)


@routes.route("GET", "/v1/orgs", permission="session", response=OrganisationList, summary="Your organisations")
async def list_organisations(call: Call) -> OrganisationList:
    async with call.db() as conn:
        rows = await conn.fetch(_COLUMNS + " WHERE m.user_id = $1 ORDER BY o.name, o.id", call.user_id)
    return OrganisationList(items=[_view(r, call.user_id) for r in rows])


@routes.route("GET", "/v1/orgs/{org_id}", permission="org.read", response=Organisation, summary="One organisation")
async def get_organisation(call: Call) -> Organisation:
    async with call.db() as conn:
        return await organisation_view(conn, call.org_id, call.user_id)


@routes.route("PATCH", "/v1/orgs/{org_id}", permission="org.manage", body=OrganisationUpdate, response=Organisation,
              summary="Rename the organisation")
async def update_organisation(call: Call) -> Organisation:
    async with call.db() as conn:
        old = await conn.fetchval("SELECT name FROM organisations WHERE id = $1 FOR UPDATE", call.org_id)
        await conn.execute("UPDATE organisations SET name = $2 WHERE id = $1", call.org_id, call.body.name)
        await call.audit(conn, "org.renamed", "organisation", call.org_id, {"from": old, "to": call.body.name})
        return await organisation_view(conn, call.org_id, call.user_id)


@routes.route("POST", "/v1/orgs/{org_id}/require-mfa", permission="org.manage", reauth=True, body=RequireMfa,
              response=Organisation, summary="Require (or stop requiring) MFA of every member",
              description="Members without MFA are then answered 403 mfa_enrollment_required until they enrol.")
async def set_require_mfa(call: Call) -> Organisation:
    if call.body.require_mfa and not call.principal.mfa_enabled:
        raise ApiError("conflict", "Turn on two-factor authentication for yourself first.")
    async with call.db() as conn:
        await conn.execute("UPDATE organisations SET require_mfa = $2 WHERE id = $1", call.org_id, call.body.require_mfa)
        await call.audit(conn, "org.mfa_required" if call.body.require_mfa else "org.mfa_not_required",
                         "organisation", call.org_id)
        return await organisation_view(conn, call.org_id, call.user_id)


@routes.route("DELETE", "/v1/orgs/{org_id}", permission="org.delete", reauth=True, response=Organisation,
              status=202, summary="Delete the organisation (super-owner only) after the grace period",
              description="Sets deletion_scheduled_at = now + admin_api.org_deletion_grace_days; "
                          "POST .../restore cancels until then.")
async def delete_organisation(call: Call) -> Organisation:
    async with call.db() as conn:
        when = await conn.fetchval(
            """UPDATE organisations SET deletion_scheduled_at = coalesce(deletion_scheduled_at, now() + make_interval(days => $2))
               WHERE id = $1 RETURNING deletion_scheduled_at""", call.org_id, call.config.admin_api.org_deletion_grace_days)
        await call.audit(conn, "org.deletion_scheduled", "organisation", call.org_id, {"at": when.isoformat()})
        return await organisation_view(conn, call.org_id, call.user_id)


@routes.route("POST", "/v1/orgs/{org_id}/restore", permission="org.delete", response=Organisation,
              summary="Cancel a scheduled deletion (super-owner only)")
async def restore_organisation(call: Call) -> Organisation:
    async with call.db() as conn:
        status = await conn.execute(
            "UPDATE organisations SET deletion_scheduled_at = NULL WHERE id = $1 AND deletion_scheduled_at IS NOT NULL",
            call.org_id)
        if status != "UPDATE 1":
            raise ApiError("conflict", "The organisation is not scheduled for deletion.")
        await call.audit(conn, "org.deletion_cancelled", "organisation", call.org_id)
        return await organisation_view(conn, call.org_id, call.user_id)


@routes.route("POST", "/v1/orgs/{org_id}/leave", permission="org.read", status=204,
              summary="Leave the organisation (not for its super-owner)")
async def leave_organisation(call: Call) -> None:
    await remove_member(call, call.user_id, action="member.left")

