"""The permission matrix and the team-management rules: pure functions, no I/O.

Roles (PRODUCT.md): owners may do everything, including billing and the Shopify connection;
admins manage app settings and the team and read reports; agents work conversations.
Revenue (Shopify) data is for owners, others only by override.  Per-member overrides
``{"revenue": bool, "reports": bool}``: an explicit override wins over the role's default, but
owners always have full access.  Only the super-owner (the organisation's creator) may delete
the organisation, and nobody may remove or demote them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    AGENT = "agent"


ROLES = tuple(r.value for r in Role)

# Every member permission, with the roles that hold it by default.
MATRIX: dict[str, frozenset[str]] = {
    # everyone
    "org.read": frozenset(ROLES),
    "team.read": frozenset(ROLES),
    "conversations.read": frozenset(ROLES),
    "conversations.write": frozenset(ROLES),
    "contacts.read": frozenset(ROLES),
    "contacts.write": frozenset(ROLES),
    "apps.read": frozenset(ROLES),
    # admins and owners: app settings, team, reports, audit
    "apps.manage": frozenset({"owner", "admin"}),
    "api_keys.manage": frozenset({"owner", "admin"}),
    "webhooks.manage": frozenset({"owner", "admin"}),
    "team.manage": frozenset({"owner", "admin"}),
    "reports.read": frozenset({"owner", "admin"}),
    "audit.read": frozenset({"owner", "admin"}),
    "contacts.erase": frozenset({"owner", "admin"}),
    # owners only
    "revenue.read": frozenset({"owner"}),
    "billing.manage": frozenset({"owner"}),
    "shopify.manage": frozenset({"owner"}),
    "org.manage": frozenset({"owner"}),
    "data.export": frozenset({"owner"}),
    # the super-owner only (checked separately: no role grants it)
    "org.delete": frozenset(),
}

SUPER_OWNER_ONLY = frozenset({"org.delete"})

# Override name -> the permission it grants or withdraws.
OVERRIDES: dict[str, str] = {"revenue": "revenue.read", "reports": "reports.read"}

# Route-level permissions that are not member permissions.
PUBLIC = "public"
SESSION = "session"
SESSION_PARTIAL = "session.partial"
NON_MEMBER_PERMISSIONS = frozenset({PUBLIC, SESSION, SESSION_PARTIAL})


def is_member_permission(permission: str) -> bool:
    return permission in MATRIX


@dataclass(frozen=True)
class Member:
    """What the rules need to know about a member."""

    user_id: object
    role: str
    overrides: Mapping[str, bool]
    is_super_owner: bool = False


def allows(member: Member, permission: str) -> bool:
    if permission not in MATRIX:
        raise ValueError(f"unknown permission {permission!r}")
    if permission in SUPER_OWNER_ONLY:
        return member.is_super_owner
    if member.role == Role.OWNER:
        return True
    for name, granted in OVERRIDES.items():
        if granted == permission and isinstance(member.overrides.get(name), bool):
            return member.overrides[name]
    return member.role in MATRIX[permission]


def effective_permissions(member: Member) -> frozenset[str]:
    return frozenset(p for p in MATRIX if allows(member, p))


# --- team management ----------------------------------------------------------------------
# Each rule answers None when allowed, else the error code the API answers with.

def can_invite(actor: Member, role: str) -> str | None:
    if not allows(actor, "team.manage"):
        return "forbidden"
    if role == Role.OWNER and actor.role != Role.OWNER:
        return "forbidden"  # only owners invite owners
    return None


def can_revoke_invite(actor: Member, invite_role: str) -> str | None:
    return can_invite(actor, invite_role)


def can_change_role(actor: Member, target: Member, new_role: str) -> str | None:
    if not allows(actor, "team.manage"):
        return "forbidden"
    if target.is_super_owner:
        return "forbidden"  # the super-owner cannot be demoted
    if actor.role != Role.OWNER and Role.OWNER in (target.role, new_role):
        return "forbidden"  # only owners touch owners
    return None


def can_remove(actor: Member, target: Member) -> str | None:
    if target.is_super_owner:
        return "forbidden"
    if actor.user_id == target.user_id:
        return None  # anyone but the super-owner may leave
    if not allows(actor, "team.manage"):
        return "forbidden"
    if target.role == Role.OWNER and actor.role != Role.OWNER:
        return "forbidden"
    return None


def can_set_overrides(actor: Member, target: Member, overrides: Mapping[str, bool | None]) -> str | None:
    """An actor may only hand out (or withdraw) access they hold themselves."""
    if not allows(actor, "team.manage"):
        return "forbidden"
    if target.role == Role.OWNER:
        return "unprocessable_entity"  # owners always have everything: an override means nothing
    for name in overrides:
        if name not in OVERRIDES:
            return "unprocessable_entity"
        if not allows(actor, OVERRIDES[name]):
            return "forbidden"
    return None


def merge_overrides(current: Mapping[str, bool], changes: Mapping[str, bool | None]) -> dict[str, bool]:
    """Apply a change set: a bool sets the override, ``None`` removes it (back to the role default)."""
    merged = {k: v for k, v in current.items() if k in OVERRIDES and isinstance(v, bool)}
    for name, value in changes.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged
