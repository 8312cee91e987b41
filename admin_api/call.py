"""What a route handler receives: one :class:`Call` per request, built by the pipeline."""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from aiohttp import web

from admin_api import keys
from admin_api.principal import Membership, Principal
from admin_api.routing import Route
from convot.config import Config
from convot.db import scoped


class Call:
    def __init__(self, request: web.Request, route: Route, ip: str) -> None:
        self.request = request
        self.route = route
        self.app = request.app
        self.ip = ip
        self.user_agent = request.headers.get("User-Agent", "")[:512]
        self.principal: Principal | None = None
        self.member: Membership | None = None
        self.path: dict[str, Any] = {}
        self.body: Any = None
        self.query: Any = None
        self._cookies: list[tuple[str, str, dict[str, Any]]] = []
        self._deleted_cookies: list[str] = []

    def __repr__(self) -> str:
        return f"<Call {self.route.method} {self.route.path}>"

    @property
    def config(self) -> Config:
        return self.app[keys.CONFIG]

    @property
    def org_id(self) -> uuid.UUID | None:
        return self.path.get("org_id")

    @property
    def user_id(self) -> uuid.UUID | None:
        return self.principal.user_id if self.principal is not None else None

    def require_user(self) -> Principal:
        if self.principal is None or self.principal.kind != "user":
            from admin_api.errors import ApiError

            raise ApiError("unauthorized")
        return self.principal

    @asynccontextmanager
    async def db(self, **extra_scope: Any):
        """A connection in a transaction scoped to this request's organisation and user.

        Every statement runs under row-level security with ``convot.org_id`` (organisation
        routes) and ``convot.user_id`` (signed-in user) set; ``extra_scope`` adds pre-tenant
        lookups (``invite_hash=...``).
        """
        scope = {"org_id": self.org_id, "user_id": self.user_id, **extra_scope}
        async with scoped(self.app[keys.DB], **scope) as conn:
            yield conn

    async def audit(self, conn: asyncpg.Connection, action: str, target_type: str | None = None,
                    target_id: object = None, details: dict | None = None, *, org_id: uuid.UUID | None = None) -> None:
        """Append to the organisation's audit log, in the caller's transaction (atomic with the change)."""
        from admin_api.audit import record

        await record(conn, org_id=org_id or self.org_id, principal=self.principal, action=action,
                     target_type=target_type, target_id=target_id, ip=self.ip, user_agent=self.user_agent,
                     details=details)

    async def auth_event(self, conn: asyncpg.Connection, event: str, success: bool, user_id: uuid.UUID | None = None,
                         details: dict | None = None) -> None:
        from admin_api.audit import record_auth_event

        await record_auth_event(conn, user_id=user_id if user_id is not None else self.user_id, event=event,
                                success=success, ip=self.ip, user_agent=self.user_agent, details=details)

    # -- cookies, applied to the response by the pipeline ------------------------------------
    def set_cookie(self, name: str, value: str, **attributes: Any) -> None:
        self._cookies.append((name, value, attributes))

    def delete_cookie(self, name: str) -> None:
        self._deleted_cookies.append(name)

    def apply_cookies(self, response: web.StreamResponse) -> None:
        for name in self._deleted_cookies:
            response.del_cookie(name, path="/")
        for name, value, attributes in self._cookies:
            response.set_cookie(name, value, **attributes)

