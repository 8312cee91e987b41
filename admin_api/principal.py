"""Who is calling: the result of authentication, and their membership of an organisation."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from admin_api import permissions


@dataclass(frozen=True)
class SessionInfo:
    id: str                       # SHA-256 hex of the cookie value
    csrf_hash: str
    mfa_verified: bool
    reauth_at: dt.datetime | None
    created_at: dt.datetime
    expires_at: dt.datetime


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    ``kind="user"``: a person signed in by session cookie (``via="cookie"``).
    ``kind="api_key"``: a REST API key of one organisation (``org_id``) with ``scopes``
    (resolver added by issue 5).
    """

    kind: str
    via: str
    user_id: uuid.UUID | None = None
    email: str = ""
    mfa_enabled: bool = False
    session: SessionInfo | None = None
    org_id: uuid.UUID | None = None
    api_key_id: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)

    def __repr__(self) -> str:
        return f"<Principal {self.kind} {self.user_id or self.api_key_id}>"

    @property
    def mfa_pending(self) -> bool:
        """Password accepted, second factor not yet: only the MFA step and logout are open."""
        return self.kind == "user" and self.mfa_enabled and not (self.session and self.session.mfa_verified)


@dataclass(frozen=True)
class Membership:
    org_id: uuid.UUID
    user_id: uuid.UUID
    role: str
    overrides: dict
    token_version: int
    is_super_owner: bool
    require_mfa: bool

    @property
    def rules(self) -> permissions.Member:
        return permissions.Member(self.user_id, self.role, self.overrides, self.is_super_owner)

    def allows(self, permission: str) -> bool:
        return permissions.allows(self.rules, permission)
