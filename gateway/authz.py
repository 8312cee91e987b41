"""Authorization decisions: pure functions of a principal, a conversation and a request.

A shopper reaches only its own contact's conversations; a member (agent, admin, owner) only
conversations of its organisation.  Whether a conversation belongs to the principal is
decided from its meta (organisation, contact), which the engine keeps in Redis; the append
script re-checks the same facts atomically, so a send can never land elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from convot.tokens import Claims
from gateway.errors import GatewayError

MEMBER_ROLES = ("agent", "admin", "owner")
MANAGER_ROLES = ("admin", "owner")


@dataclass(frozen=True, slots=True)
class Principal:
    org_id: str
    subject: str              # contact id (shopper) or user id (member)
    role: str
    app_id: str | None
    jti: str
    iat: int
    version: int | None

    @classmethod
    def from_claims(cls, c: Claims) -> "Principal":
        return cls(c.org, c.sub, c.role, c.app_id, c.jti, c.iat, c.version)

    @property
    def is_shopper(self) -> bool:
        return self.role == "shopper"

    @property
    def contact_id(self) -> str:
        """The ownership check the engine applies ('' = members: any conversation of the org)."""
        return self.subject if self.is_shopper else ""


def can_access(p: Principal, conv_org: str, conv_contact: str) -> bool:
    if conv_org != p.org_id:
        return False
    return not p.is_shopper or conv_contact == p.subject


def require_access(p: Principal, conv_org: str | None, conv_contact: str | None) -> None:
    """Another tenant's or another contact's conversation answers not_found, never forbidden."""
    if conv_org is None or not can_access(p, conv_org, conv_contact or ""):
        raise GatewayError("not_found")


def message_type_for(p: Principal, kind: str) -> tuple[str, str]:
    """(message type, author kind) for a socket send; shoppers cannot write notes."""
    if p.is_shopper:
        if kind != "reply":
            raise GatewayError("forbidden", "shoppers cannot write notes")
        return "incoming", "contact"
    return ("note" if kind == "note" else "outgoing"), "member"


def require_member(p: Principal) -> None:
    if p.is_shopper:
        raise GatewayError("forbidden", "members only")


def may_update(p: Principal, *, delete: bool) -> None:
    require_member(p)
    if delete and p.role not in MANAGER_ROLES:
        raise GatewayError("forbidden", "only admins and owners delete conversations")


def may_delete_message(p: Principal, message: dict) -> None:
    """Admins and owners delete any message; agents only their own outgoing ones."""
    require_member(p)
    if p.role in MANAGER_ROLES:
        return
    if message.get("type") == "outgoing" and message.get("author_kind") == "member" \
            and message.get("author_id") == p.subject:
        return
    raise GatewayError("forbidden", "agents delete only their own replies")


def may_start_conversation(p: Principal) -> None:
    if not p.is_shopper or not p.app_id:
        raise GatewayError("bad_frame", "field conversation_id")


def may_refresh(p: Principal, new: Claims) -> None:
    if (new.org, new.sub, new.role) != (p.org_id, p.subject, p.role):
        raise GatewayError("token_mismatch")


def revocation(claims: Claims, token_record, subject_record, org_record) -> str | None:
    """Decide from the Redis revocation records (None when absent); returns a close code name.

    subject_record is "cut:min_version": tokens issued at or before ``cut`` are dead (member
    removed, logged out everywhere, contact erased); member tokens older than ``min_version``
    are dead (role changed).
    """
    if token_record is not None:
        return "token_revoked"
    if org_record is not None and claims.iat <= int(org_record):
        return "access_revoked"
    if subject_record is not None:
        raw = subject_record.decode() if isinstance(subject_record, bytes) else str(subject_record)
        cut, _, min_version = raw.partition(":")
        if claims.iat <= int(cut):
            return "access_revoked"
        if claims.version is not None and min_version and claims.version < int(min_version):
            return "reauthenticate"
    return None


def control_close(event: dict, p: Principal, version: int | None) -> str | None:
    """Which sockets a control event closes, and with which code name (None: unaffected)."""
    kind = event.get("kind")
    if kind == "token_revoked":
        return "token_revoked" if event.get("jti") == p.jti else None
    if event.get("org") != p.org_id:
        return None
    if kind == "org_deleted":
        return "access_revoked"
    if kind == "contact_erased":
        return "access_revoked" if p.is_shopper and event.get("contact") == p.subject else None
    if p.is_shopper or event.get("user") != p.subject:
        return None
    if kind == "member_removed":
        return "access_revoked"
    if kind == "logout":
        return "token_revoked"
    if kind == "role_changed":
        new_version = event.get("version")
        if isinstance(new_version, int) and version is not None and version >= new_version:
            return None
        return "reauthenticate"
    return None
