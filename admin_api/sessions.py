"""Server-side sign-in sessions.

The browser holds ``convot_session`` (32 random bytes; HttpOnly, SameSite, Secure under TLS);
the database holds only its SHA-256 (``user_sessions.id``).  Each session has a CSRF token
(its SHA-256 in ``csrf_hash``), given at sign-in in the answer and in the readable
``convot_csrf`` cookie; state-changing requests must echo it in ``X-CSRF-Token``.  A new
session (new id) is created at every sign-in and again when the MFA step completes.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
import uuid

import asyncpg
from aiohttp import web

from admin_api import keys
from admin_api.call import Call
from admin_api.errors import ApiError
from admin_api.pipeline import sha256_hex
from admin_api.principal import Principal, SessionInfo
from admin_api.routing import RouteTable
from admin_api.schemas import Array, Boolean, DateTime, Integer, Nested, Schema, String
from convot.db import scoped
from engine.errors import EngineError

routes = RouteTable(tag="sessions")
log = logging.getLogger("convot.admin_api.sessions")

SESSION_COOKIE = "convot_session"
CSRF_COOKIE = "convot_csrf"
_COOKIE = re.compile(r"^[A-Za-z0-9_-]{43}$")
TOUCH_EVERY = dt.timedelta(seconds=60)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


async def create_session(conn: asyncpg.Connection, config, user_id: uuid.UUID, *, mfa_verified: bool,
                         ip: str, user_agent: str) -> tuple[str, str]:
    """Insert a new session; answer (cookie value, CSRF token), both shown to the browser only."""
    from admin_api.audit import _inet

    cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    await conn.execute(
        """INSERT INTO user_sessions (id, user_id, csrf_hash, mfa_verified, reauth_at, ip, user_agent, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        sha256_hex(cookie), user_id, sha256_hex(csrf), mfa_verified, _now() if mfa_verified else None,
        _inet(ip), user_agent[:512], _now() + dt.timedelta(seconds=config.admin_api.session_ttl))
    # old, long-dead sessions of this user are of no use to anyone
    await conn.execute("DELETE FROM user_sessions WHERE user_id = $1 AND expires_at < now() - interval '30 days'",
                       user_id)
    return cookie, csrf


def issue_cookies(call: Call, cookie: str, csrf: str) -> None:
    policy = call.app[keys.SECURITY]
    ttl = call.config.admin_api.session_ttl
    common = {"path": "/", "secure": policy.tls, "samesite": policy.samesite, "max_age": ttl}
    call.set_cookie(SESSION_COOKIE, cookie, httponly=True, **common)
    call.set_cookie(CSRF_COOKIE, csrf, httponly=False, **common)


def clear_cookies(call: Call) -> None:
    call.delete_cookie(SESSION_COOKIE)
    call.delete_cookie(CSRF_COOKIE)


async def revoke_session(conn: asyncpg.Connection, session_id: str) -> None:
    await conn.execute("UPDATE user_sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", session_id)


async def revoke_user_sessions(conn: asyncpg.Connection, user_id: uuid.UUID, *, keep: str | None = None) -> int:
    """End every live session of a user (but ``keep``); answer how many ended."""
    status = await conn.execute(
        "UPDATE user_sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL AND id IS DISTINCT FROM $2",
        user_id, keep)
    return int(status.split()[-1])


async def end_gateway_sockets(app: web.Application, user_id: uuid.UUID) -> None:
    """After sessions ended: tell every gateway that this person's sockets must re-authenticate
    (a ``logout`` control event per organisation).  Best effort: the sessions are already over
    and gateway tokens expire within ``auth.agent_token_ttl`` anyway."""
    try:
        async with scoped(app[keys.DB], user_id=user_id) as conn:
            orgs = await conn.fetch("SELECT org_id FROM members WHERE user_id = $1", user_id)
        for row in orgs:
            await app[keys.ENGINE].publish_control({"kind": "logout", "org": str(row["org_id"]), "user": str(user_id)})
    except EngineError:
        log.warning("could not publish logout to the gateways")


async def session_resolver(request: web.Request) -> Principal | None:
    """Authentication by session cookie (the first resolver of the chain)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is None:
        return None
    if not _COOKIE.match(cookie):
        raise ApiError("unauthorized")
    config = request.app[keys.CONFIG]
    sid = sha256_hex(cookie)
    async with request.app[keys.DB].acquire() as conn:
        row = await conn.fetchrow(
            """SELECT s.user_id, s.csrf_hash, s.mfa_verified, s.reauth_at, s.created_at, s.expires_at,
                      s.last_seen_at, s.revoked_at, u.email, u.totp_enabled_at IS NOT NULL AS mfa_enabled
               FROM user_sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1""", sid)
        now = _now()
        idle = dt.timedelta(seconds=config.admin_api.session_idle_ttl)
        if row is None or row["revoked_at"] is not None or row["expires_at"] <= now or row["last_seen_at"] + idle <= now:
            raise ApiError("unauthorized", "Your session has ended: sign in again.")
        if now - row["last_seen_at"] > TOUCH_EVERY:
            await conn.execute("UPDATE user_sessions SET last_seen_at = now() WHERE id = $1", sid)
    session = SessionInfo(id=sid, csrf_hash=row["csrf_hash"], mfa_verified=row["mfa_verified"],
                          reauth_at=row["reauth_at"], created_at=row["created_at"], expires_at=row["expires_at"])
    return Principal(kind="user", via="cookie", user_id=row["user_id"], email=row["email"],
                     mfa_enabled=row["mfa_enabled"], session=session)


# --- routes -------------------------------------------------------------------------------

class SessionView(Schema):
    """A live sign-in session of yours."""

    id = String(description="the session's identifier (not its secret)")
    current = Boolean()
    ip = String(nullable=True)
    user_agent = String()
    created_at = DateTime()
    last_seen_at = DateTime()
    expires_at = DateTime()


class SessionList(Schema):
    items = Array(Nested(SessionView))


class CurrentSession(Schema):
    user_id = String()
    email = String()
    mfa_enabled = Boolean()
    mfa_pending = Boolean(description="true until the MFA step (POST /v1/auth/mfa) is done")
    expires_at = DateTime()


class RevokedCount(Schema):
    revoked = Integer(description="how many sessions ended")


_SESSION_ID = String(min_length=64, max_length=64, pattern="[0-9a-f]{64}", example="0" * 64)


@routes.route("GET", "/v1/auth/session", permission="session.partial", response=CurrentSession,
              summary="The current session (also during the MFA step)")
async def current_session(call: Call) -> CurrentSession:
    p = call.principal
    return CurrentSession(user_id=str(p.user_id), email=p.email, mfa_enabled=p.mfa_enabled,
                          mfa_pending=p.mfa_pending, expires_at=p.session.expires_at)


@routes.route("GET", "/v1/me/sessions", permission="session", response=SessionList,
              summary="Your live sessions")
async def list_sessions(call: Call) -> SessionList:
    async with call.db() as conn:
        rows = await conn.fetch(
            """SELECT id, host(ip) AS ip, user_agent, created_at, last_seen_at, expires_at FROM user_sessions
               WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
                 AND last_seen_at > now() - make_interval(secs => $2)
               ORDER BY last_seen_at DESC""", call.user_id, call.config.admin_api.session_idle_ttl)
    current = call.principal.session.id
    return SessionList(items=[SessionView(current=r["id"] == current, **dict(r)) for r in rows])


@routes.route("DELETE", "/v1/me/sessions/{session_id}", permission="session", params={"session_id": _SESSION_ID},
              status=204, summary="End one of your sessions")
async def revoke_one(call: Call) -> None:
    sid = call.path["session_id"]
    async with call.db() as conn:
        status = await conn.execute(
            "UPDATE user_sessions SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
            sid, call.user_id)
        if status != "UPDATE 1":
            raise ApiError("not_found")
        await call.auth_event(conn, "session.revoked", True, details={"current": sid == call.principal.session.id})
    if sid == call.principal.session.id:
        clear_cookies(call)
    await end_gateway_sockets(call.app, call.user_id)


@routes.route("POST", "/v1/me/sessions/revoke-others", permission="session", response=RevokedCount,
              summary="End every session of yours but this one")
async def revoke_others(call: Call) -> RevokedCount:
    async with call.db() as conn:
        count = await revoke_user_sessions(conn, call.user_id, keep=call.principal.session.id)
        await call.auth_event(conn, "session.revoked_others", True, details={"count": count})
    if count:
        await end_gateway_sockets(call.app, call.user_id)
    return RevokedCount(revoked=count)
