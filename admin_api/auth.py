"""Accounts: sign-up, email verification, sign-in/out, re-authentication, password change and
reset, your profile and email change.

No user enumeration: sign-up and reset requests answer ``202`` at once whatever the email and do
their work in the background (``jobs.py``); sign-in answers ``invalid_credentials`` for an
unknown email after running bcrypt against a dummy hash, exactly as for a wrong password; the
throttles key on the email as typed, existing or not.
"""

from __future__ import annotations

import asyncpg
from aiohttp import web

from admin_api import keys, mails, onetime
from admin_api.audit import record_auth_event
from admin_api.call import Call
from admin_api.errors import ApiError
from admin_api.mfa import throttled_second_factor
from admin_api.passwords import password_problem
from admin_api.routing import RouteTable
from admin_api.schemas import Array, Boolean, DateTime, Integer, Nested, Schema, String, Uuid
from admin_api.sessions import (clear_cookies, create_session, end_gateway_sockets, issue_cookies, revoke_session,
                                revoke_user_sessions)
from convot.db import scoped

routes = RouteTable(tag="auth")

EMAIL = String(format="email", example="ana@example.com")
PASSWORD = String(format="password", min_length=1, max_length=1024, example="correct horse battery staple")
NEW_PASSWORD = String(format="password", min_length=1, max_length=1024, example="a new long passphrase",
                      description="at least 10 characters")
TOKEN = String(min_length=1, max_length=100, example="x" * 43, description="the token from the mail's link")


def email_key(email: str) -> str:
    return email.strip().lower()


def check_new_password(password: str, email: str = "", field: str = "new_password") -> None:
    problem = password_problem(password, email)
    if problem:
        raise ApiError("unprocessable_entity", details={"field": field, "reason": problem})


# --- schemas --------------------------------------------------------------------------------

class SignupBody(Schema):
    email = EMAIL
    password = String(format="password", min_length=1, max_length=1024, example="correct horse battery staple",
                      description="at least 10 characters")
    name = String(max_length=200, default="", example="Ana Lima")


class Accepted(Schema):
    status = String(example="accepted")


class Done(Schema):
    status = String(example="ok")


class TokenBody(Schema):
    token = TOKEN


class LoginBody(Schema):
    email = EMAIL
    password = PASSWORD


class LoginResult(Schema):
    user_id = String()
    mfa_required = Boolean(description="true: send a code to POST /v1/auth/mfa before anything else")
    csrf_token = String(description="echo in X-CSRF-Token on state-changing calls (also in the convot_csrf cookie)")


class ReauthBody(Schema):
    password = PASSWORD
    code = String(required=False, min_length=6, max_length=40, description="required when MFA is on")


class ReauthResult(Schema):
    reauth_until = DateTime()


class PasswordChangeBody(Schema):
    current_password = PASSWORD
    new_password = NEW_PASSWORD
    revoke_other_sessions = Boolean(default=True)


class PasswordChanged(Schema):
    revoked_sessions = Integer()


class ResetRequestBody(Schema):
    email = EMAIL


class ResetBody(Schema):
    token = TOKEN
    new_password = NEW_PASSWORD


class Membership(Schema):
    org_id = Uuid()
    name = String()
    role = String()
    mfa_enrollment_required = Boolean(description="the organisation requires MFA and you have none yet")


class Me(Schema):
    id = Uuid()
    email = String()
    name = String()
    email_verified = Boolean()
    mfa_enabled = Boolean()
    created_at = DateTime()
    organisations = Array(Nested(Membership))


class MeUpdate(Schema):
    name = String(max_length=200, example="Ana Lima")


class EmailChangeBody(Schema):
    email = EMAIL


# --- sign-up and verification ---------------------------------------------------------------

async def _signup_job(app: web.Application, email: str, password: str, name: str, ip: str, ua: str) -> None:
    config = app[keys.CONFIG]
    hashed = await app[keys.HASHER].hash(password)
    async with scoped(app[keys.DB]) as conn:
        user_id = await conn.fetchval(
            "INSERT INTO users (email, password_hash, name) VALUES ($1, $2, $3) ON CONFLICT (email) DO NOTHING RETURNING id",
            email, hashed, name)
        if user_id is not None:
            token = await onetime.create(conn, user_id, "verify_email", config.auth.verify_token_ttl)
            await record_auth_event(conn, user_id=user_id, event="signup", success=True, ip=ip, user_agent=ua)
    if user_id is not None:
        app[keys.OUTBOX].enqueue(mails.verify_email(config, email, token))
        return
    limits = app[keys.LIMITS]
    # the account exists: tell its owner (at most reset_account_limit such notices per window)
    if not await app[keys.THROTTLE].hit((limits.reset_account, "notice:" + email_key(email))):
        app[keys.OUTBOX].enqueue(mails.account_exists(config, email))


@routes.route("POST", "/v1/auth/signup", permission="public", body=SignupBody, response=Accepted, status=202,
              summary="Create an account; a verification link is mailed",
              description="Answers 202 whether or not the email already has an account (its owner gets a mail).")
async def signup(call: Call) -> Accepted:
    b = call.body
    await call.app[keys.THROTTLE].take((call.app[keys.LIMITS].signup_ip, call.ip))
    problem = password_problem(b.password, b.email)
    if problem:
        raise ApiError("unprocessable_entity", details={"field": "password", "reason": problem})
    app = call.app
    app[keys.JOBS].submit("signup", lambda: _signup_job(app, b.email, b.password, b.name, call.ip, call.user_agent))
    return Accepted(status="accepted")


@routes.route("POST", "/v1/auth/verify-email", permission="public", body=TokenBody, response=Done,
              summary="Confirm an email address with the mailed token")
async def verify_email(call: Call) -> Done:
    throttle, limits = call.app[keys.THROTTLE], call.app[keys.LIMITS]
    await throttle.check((limits.token_ip, call.ip))
    async with call.db() as conn:
        row = await onetime.spend(conn, call.body.token, "verify_email")
        if row is not None:
            await conn.execute("UPDATE users SET email_verified_at = coalesce(email_verified_at, now()) WHERE id = $1",
                               row["user_id"])
            await call.auth_event(conn, "email.verified", True, user_id=row["user_id"])
    if row is None:
        await throttle.add((limits.token_ip, call.ip))
        raise ApiError("token_invalid")
    return Done(status="verified")


# --- sign-in --------------------------------------------------------------------------------

@routes.route("POST", "/v1/auth/login", permission="public", body=LoginBody, response=LoginResult,
              summary="Sign in with email and password",
              description="Sets a new session cookie. With MFA on, the session can only do the MFA step "
                          "(POST /v1/auth/mfa) until a code is accepted.")
async def login(call: Call) -> LoginResult:
    b = call.body
    app = call.app
    throttle, limits, hasher = app[keys.THROTTLE], app[keys.LIMITS], app[keys.HASHER]
    pairs = ((limits.login_account, email_key(b.email)), (limits.login_ip, call.ip))
    await throttle.guard(pairs, pairs[1])
    async with call.db() as conn:
        user = await conn.fetchrow(
            "SELECT id, email, password_hash, email_verified_at, totp_enabled_at FROM users WHERE email = $1", b.email)
    ok = await hasher.verify(b.password, user["password_hash"] if user else None)
    if not ok:
        await throttle.add(*pairs)
        locked = await throttle.peek(pairs[0]) > 0
        async with call.db() as conn:
            await call.auth_event(conn, "login", False, user_id=user["id"] if user else None,
                                  details={"reason": "invalid_credentials"})
            if locked and user is not None:
                await call.auth_event(conn, "login.locked", False, user_id=user["id"])
        raise ApiError("invalid_credentials")

    await throttle.clear(pairs[0])
    user_id = user["id"]
    if user["email_verified_at"] is None:
        async with call.db() as conn:
            await call.auth_event(conn, "login", False, user_id=user_id, details={"reason": "email_unverified"})
            if not await throttle.hit((limits.reset_account, "verify:" + email_key(b.email))):
                token = await onetime.create(conn, user_id, "verify_email", call.config.auth.verify_token_ttl)
                app[keys.OUTBOX].enqueue(mails.verify_email(call.config, user["email"], token))
        raise ApiError("email_unverified")

    if hasher.needs_rehash(user["password_hash"]):
        rehashed = await hasher.hash(b.password)
    else:
        rehashed = None
    mfa = user["totp_enabled_at"] is not None
    async with call.db() as conn:
        if rehashed:
            await conn.execute("UPDATE users SET password_hash = $2 WHERE id = $1", user_id, rehashed)
        if call.principal is not None and call.principal.session is not None:
            await revoke_session(conn, call.principal.session.id)  # a sign-in never reuses a session id
        cookie, csrf = await create_session(conn, call.config, user_id, mfa_verified=not mfa, ip=call.ip,
                                            user_agent=call.user_agent)
        await call.auth_event(conn, "login", True, user_id=user_id, details={"mfa_pending": mfa})
    issue_cookies(call, cookie, csrf)
    return LoginResult(user_id=str(user_id), mfa_required=mfa, csrf_token=csrf)


@routes.route("POST", "/v1/auth/logout", permission="session.partial", status=204, summary="Sign out")
async def logout(call: Call) -> None:
    async with call.db() as conn:
        await revoke_session(conn, call.principal.session.id)
        await call.auth_event(conn, "logout", True)
    clear_cookies(call)
    await end_gateway_sockets(call.app, call.user_id)


async def _verify_password_throttled(call: Call, password: str, event: str) -> None:
    """Re-check the signed-in user's password under the login throttles."""
    p = call.require_user()
    throttle, limits = call.app[keys.THROTTLE], call.app[keys.LIMITS]
    pairs = ((limits.login_account, email_key(p.email)), (limits.login_ip, call.ip))
    await throttle.guard(pairs, pairs[1])
    async with call.db() as conn:
        hashed = await conn.fetchval("SELECT password_hash FROM users WHERE id = $1", p.user_id)
    if not await call.app[keys.HASHER].verify(password, hashed):
        await throttle.add(*pairs)
        async with call.db() as conn:
            await call.auth_event(conn, event, False, details={"reason": "invalid_credentials"})
        raise ApiError("invalid_credentials", "Wrong password.")


@routes.route("POST", "/v1/auth/reauth", permission="session", body=ReauthBody, response=ReauthResult,
              summary="Confirm your password (and code, with MFA on) before a sensitive change")
async def reauth(call: Call) -> ReauthResult:
    p = call.principal
    await _verify_password_throttled(call, call.body.password, "reauth")
    method = None
    async with call.db() as conn:
        if p.mfa_enabled:
            if not call.body.is_set("code"):
                raise ApiError("mfa_required", "Enter a code from your authenticator app too.")
            method = await throttled_second_factor(call, conn, p.user_id, call.body.code, "reauth")
        if method is not None or not p.mfa_enabled:
            until = await conn.fetchval(
                "UPDATE user_sessions SET reauth_at = now() WHERE id = $1 RETURNING now() + make_interval(secs => $2)",
                p.session.id, call.config.admin_api.reauth_seconds)
            await call.auth_event(conn, "reauth", True)
    if p.mfa_enabled and method is None:
        raise ApiError("mfa_invalid")
    return ReauthResult(reauth_until=until)


# --- passwords ------------------------------------------------------------------------------

@routes.route("POST", "/v1/auth/password/change", permission="session", body=PasswordChangeBody,
              response=PasswordChanged, summary="Change your password (by default ends your other sessions)")
async def change_password(call: Call) -> PasswordChanged:
    p, b = call.principal, call.body
    await _verify_password_throttled(call, b.current_password, "password.change")
    check_new_password(b.new_password, p.email)
    hashed = await call.app[keys.HASHER].hash(b.new_password)
    async with call.db() as conn:
        await conn.execute("UPDATE users SET password_hash = $2, password_changed_at = now() WHERE id = $1",
                           p.user_id, hashed)
        revoked = await revoke_user_sessions(conn, p.user_id, keep=p.session.id) if b.revoke_other_sessions else 0
        await onetime.spend_all(conn, p.user_id, "reset_password")
        await call.auth_event(conn, "password.changed", True, details={"revoked_sessions": revoked})
    call.app[keys.OUTBOX].enqueue(mails.password_changed(call.config, p.email))
    if revoked:
        await end_gateway_sockets(call.app, p.user_id)
    return PasswordChanged(revoked_sessions=revoked)


async def _reset_request_job(app: web.Application, email: str, ip: str, ua: str) -> None:
    config, limits = app[keys.CONFIG], app[keys.LIMITS]
    async with scoped(app[keys.DB]) as conn:
        user = await conn.fetchrow("SELECT id, email FROM users WHERE email = $1", email)
        if user is None:
            return
        # Budget per account: when spent, the owner's mailbox already holds that many live links
        # (a link lives as long as the window), so nobody can lock them out of reset.
        if await app[keys.THROTTLE].hit((limits.reset_account, email_key(email))):
            await record_auth_event(conn, user_id=user["id"], event="password.reset_requested", success=False,
                                    ip=ip, user_agent=ua, details={"reason": "rate_limited"})
            return
        token = await onetime.create(conn, user["id"], "reset_password", config.admin_api.reset_window)
        await record_auth_event(conn, user_id=user["id"], event="password.reset_requested", success=True,
                                ip=ip, user_agent=ua)
    app[keys.OUTBOX].enqueue(mails.reset_password(config, user["email"], token))


@routes.route("POST", "/v1/auth/password/reset-request", permission="public", body=ResetRequestBody,
              response=Accepted, status=202, summary="Mail a password reset link",
              description="Answers 202 whether or not the email has an account.")
async def reset_request(call: Call) -> Accepted:
    app = call.app
    await app[keys.THROTTLE].take((app[keys.LIMITS].reset_ip, call.ip))
    email, ip, ua = call.body.email, call.ip, call.user_agent
    app[keys.JOBS].submit("reset_request", lambda: _reset_request_job(app, email, ip, ua))
    return Accepted(status="accepted")


@routes.route("POST", "/v1/auth/password/reset", permission="public", body=ResetBody, response=Done,
              summary="Set a new password with a mailed reset token",
              description="Spends every outstanding reset link, verifies the email, ends every session and "
                          "lifts the account's sign-in lock.")
async def reset_password(call: Call) -> Done:
    throttle, limits = call.app[keys.THROTTLE], call.app[keys.LIMITS]
    await throttle.check((limits.reset_confirm_ip, call.ip))
    token = call.body.token
    async with call.db() as conn:
        row = await conn.fetchrow(
            """SELECT t.user_id, u.email FROM auth_tokens t JOIN users u ON u.id = t.user_id
               WHERE t.token_hash = $1 AND t.purpose = 'reset_password' AND t.used_at IS NULL AND t.expires_at > now()""",
            onetime.token_hash(token)) if onetime.well_formed(token) else None
    if row is None:
        await throttle.add((limits.reset_confirm_ip, call.ip))
        raise ApiError("token_invalid")
    check_new_password(call.body.new_password, row["email"])
    hashed = await call.app[keys.HASHER].hash(call.body.new_password)
    async with call.db() as conn:
        spent = await onetime.spend(conn, token, "reset_password")
        if spent is not None:
            user_id = spent["user_id"]
            await onetime.spend_all(conn, user_id, "reset_password")
            await conn.execute(
                """UPDATE users SET password_hash = $2, password_changed_at = now(),
                          email_verified_at = coalesce(email_verified_at, now()) WHERE id = $1""", user_id, hashed)
            revoked = await revoke_user_sessions(conn, user_id)
            await call.auth_event(conn, "password.reset", True, user_id=user_id, details={"revoked_sessions": revoked})
    if spent is None:
        raise ApiError("token_invalid")
    await throttle.clear((limits.login_account, email_key(row["email"])))
    call.app[keys.OUTBOX].enqueue(mails.password_changed(call.config, row["email"]))
    await end_gateway_sockets(call.app, row["user_id"])
    return Done(status="password_reset")


# --- you ------------------------------------------------------------------------------------

async def load_me(call: Call) -> Me:
    async with call.db() as conn:
        user = await conn.fetchrow(
            "SELECT id, email, name, email_verified_at, totp_enabled_at, created_at FROM users WHERE id = $1",
            call.user_id)
        orgs = await conn.fetch(
            """SELECT o.id, o.name, m.role, o.require_mfa FROM members m JOIN organisations o ON o.id = m.org_id
               WHERE m.user_id = $1 ORDER BY o.name""", call.user_id)
    mfa = user["totp_enabled_at"] is not None
    return Me(id=user["id"], email=user["email"], name=user["name"], email_verified=user["email_verified_at"] is not None,
              mfa_enabled=mfa, created_at=user["created_at"],
              organisations=[Membership(org_id=o["id"], name=o["name"], role=o["role"],
                                        mfa_enrollment_required=o["require_mfa"] and not mfa) for o in orgs])


@routes.route("GET", "/v1/me", permission="session", response=Me, summary="Your account and organisations")
async def get_me(call: Call) -> Me:
    return await load_me(call)


@routes.route("PATCH", "/v1/me", permission="session", body=MeUpdate, response=Me, summary="Change your name")
async def update_me(call: Call) -> Me:
    async with call.db() as conn:
        await conn.execute("UPDATE users SET name = $2 WHERE id = $1", call.user_id, call.body.name)
    return await load_me(call)


@routes.route("POST", "/v1/me/email", permission="session", reauth=True, body=EmailChangeBody, response=Accepted,
              status=202, summary="Move your account to another email address (confirmed from that address)")
async def request_email_change(call: Call) -> Accepted:
    p = call.principal
    new = call.body.email
    if email_key(new) == email_key(p.email):
        raise ApiError("unprocessable_entity", details={"field": "email", "reason": "is already your address"})
    async with call.db() as conn:
        token = await onetime.create(conn, p.user_id, "change_email", 3600, {"email": new})
        await call.auth_event(conn, "email.change_requested", True)
    call.app[keys.OUTBOX].enqueue(mails.email_change(call.config, new, token))
    call.app[keys.OUTBOX].enqueue(mails.email_change_notice(call.config, p.email))
    return Accepted(status="accepted")


@routes.route("POST", "/v1/me/email/confirm", permission="session", body=TokenBody, response=Me,
              summary="Confirm the new email address with the token mailed to it")
async def confirm_email_change(call: Call) -> Me:
    throttle, limits = call.app[keys.THROTTLE], call.app[keys.LIMITS]
    await throttle.check((limits.token_ip, call.ip))
    try:
        async with call.db() as conn:
            row = await onetime.spend(conn, call.body.token, "change_email")
            if row is not None and row["user_id"] == call.user_id:
                await conn.execute("UPDATE users SET email = $2, email_verified_at = now() WHERE id = $1",
                                   call.user_id, row["payload"]["email"])
                await call.auth_event(conn, "email.changed", True)
            else:
                row = None
                raise ApiError("token_invalid")
    except asyncpg.UniqueViolationError:
        raise ApiError("conflict", "Another account uses that address.") from None
    except ApiError:
        await throttle.add((limits.token_ip, call.ip))
        raise
    return await load_me(call)
