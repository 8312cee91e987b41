"""Two-factor authentication: TOTP (RFC 6238, see ``totp.py``) and single-use recovery codes.

The TOTP secret is stored encrypted (``convot.crypto``, AAD = the user's row).  Ten recovery
codes of 80 bits each are shown once and stored as SHA-256 bound to the user; using one is an
atomic UPDATE, so it works once.  Enabling, disabling and regenerating need a recent
re-authentication; enabling and disabling can end every other session.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid

import asyncpg

from admin_api import keys, mails, totp
from admin_api.call import Call
from admin_api.errors import ApiError
from admin_api.routing import RouteTable
from admin_api.schemas import Array, Boolean, Integer, Schema, String
from admin_api.sessions import (create_session, end_gateway_sockets, issue_cookies, revoke_session,
                                revoke_user_sessions)
from convot.crypto import row_aad

routes = RouteTable(tag="mfa")

RECOVERY_CODES = 10


def totp_aad(user_id: uuid.UUID) -> bytes:
    return row_aad("users", "totp_secret_enc", user_id)


def new_recovery_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(10)).decode().lower()  # 80 bits, 16 characters
    return "-".join(raw[i:i + 4] for i in range(0, 16, 4))


def normalise_recovery_code(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch.isalnum())


def recovery_code_hash(user_id: uuid.UUID, code: str) -> str:
    return hashlib.sha256(f"{user_id}:{normalise_recovery_code(code)}".encode()).hexdigest()


async def replace_recovery_codes(conn: asyncpg.Connection, user_id: uuid.UUID) -> list[str]:
    codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
    await conn.execute("DELETE FROM recovery_codes WHERE user_id = $1", user_id)
    await conn.executemany("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)",
                           [(user_id, recovery_code_hash(user_id, c)) for c in codes])
    return codes


async def check_totp(conn: asyncpg.Connection, encryptor, user_id: uuid.UUID, code: str, *,
                     pending: bool = False) -> bool:
    """True if ``code`` is valid now and newer than the last accepted step; records the step."""
    row = await conn.fetchrow("SELECT totp_secret_enc, totp_enabled_at, totp_last_step FROM users WHERE id = $1",
                              user_id)
    if row is None or row["totp_secret_enc"] is None or (row["totp_enabled_at"] is None) != pending:
        return False
    secret = encryptor.decrypt(row["totp_secret_enc"], totp_aad(user_id))
    step = totp.accepted_step(secret, code, time.time(), row["totp_last_step"])
    if step is None:
        return False
    status = await conn.execute(
        "UPDATE users SET totp_last_step = $2 WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
        user_id, step)
    return status == "UPDATE 1"


async def spend_recovery_code(conn: asyncpg.Connection, user_id: uuid.UUID, code: str) -> bool:
    if not 8 <= len(normalise_recovery_code(code)) <= 32:
        return False
    row = await conn.fetchrow(
        "UPDATE recovery_codes SET used_at = now() WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL RETURNING id",
        user_id, recovery_code_hash(user_id, code))
    return row is not None


async def check_second_factor(conn: asyncpg.Connection, encryptor, user_id: uuid.UUID, code: str) -> str | None:
    """``"totp"`` or ``"recovery_code"`` when the code is accepted (and spent), else None."""
    digits = totp.normalise_code(code)
    if len(digits) == totp.DIGITS and digits.isdigit():
        return "totp" if await check_totp(conn, encryptor, user_id, digits) else None
    return "recovery_code" if await spend_recovery_code(conn, user_id, code) else None


async def throttled_second_factor(call: Call, conn: asyncpg.Connection, user_id: uuid.UUID, code: str,
                                  event: str) -> str | None:
    """Check a code under the MFA throttles (per account and per IP).

    Raises 429 when throttled; a wrong code counts against both throttles, is recorded as a
    failed ``event`` in the caller's transaction, and answers None (the caller raises
    ``mfa_invalid`` after its transaction has committed that record).
    """
    throttle, limits = call.app[keys.THROTTLE], call.app[keys.LIMITS]
    pairs = ((limits.mfa_user, str(user_id)), (limits.mfa_ip, call.ip))
    await throttle.guard(pairs, pairs[1])
    method = await check_second_factor(conn, call.app[keys.ENCRYPTOR], user_id, code)
    if method is None:
        await throttle.add(*pairs)
        await call.auth_event(conn, event, False, user_id=user_id)
    return method


# --- schemas --------------------------------------------------------------------------------

CODE = String(min_length=6, max_length=40, example="123456",
              description="a 6-digit authenticator code, or a recovery code")


class MfaCode(Schema):
    code = CODE


class MfaChange(Schema):
    code = CODE
    revoke_other_sessions = Boolean(default=True, description="end every other session of yours")


class MfaStatus(Schema):
    enabled = Boolean()
    recovery_codes_remaining = Integer()


class TotpSetup(Schema):
    secret = String(description="base32 secret to type into an authenticator app")
    otpauth_uri = String(description="the same as an otpauth:// URI for a QR code")


class RecoveryCodes(Schema):
    recovery_codes = Array(String(), description="shown once: keep them somewhere safe")
    revoked_sessions = Integer()


class MfaVerified(Schema):
    user_id = String()
    method = String(description="totp or recovery_code")
    csrf_token = String(description="the new session's CSRF token (also in the convot_csrf cookie)")


class Disabled(Schema):
    enabled = Boolean()
    revoked_sessions = Integer()


# --- routes ---------------------------------------------------------------------------------

@routes.route("POST", "/v1/auth/mfa", permission="session.partial", body=MfaCode, response=MfaVerified,
              summary="Second step of sign-in: an authenticator or recovery code",
              description="On success the half-signed-in session is replaced by a new one (new cookie).")
async def verify_mfa(call: Call) -> MfaVerified:
    p = call.principal
    if not p.mfa_pending:
        raise ApiError("conflict", "This session has already passed the MFA step.")
    async with call.db() as conn:
        method = await throttled_second_factor(call, conn, p.user_id, call.body.code, "mfa.verify")
        if method is not None:
            await revoke_session(conn, p.session.id)
            cookie, csrf = await create_session(conn, call.config, p.user_id, mfa_verified=True, ip=call.ip,
                                                user_agent=call.user_agent)
            await call.auth_event(conn, "mfa.verify", True, details={"method": method})
    if method is None:
        raise ApiError("mfa_invalid")
    issue_cookies(call, cookie, csrf)
    return MfaVerified(user_id=str(p.user_id), method=method, csrf_token=csrf)


@routes.route("GET", "/v1/me/mfa", permission="session", response=MfaStatus, summary="Your MFA status")
async def mfa_status(call: Call) -> MfaStatus:
    async with call.db() as conn:
        remaining = await conn.fetchval(
            "SELECT count(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL", call.user_id)
    return MfaStatus(enabled=call.principal.mfa_enabled, recovery_codes_remaining=remaining if call.principal.mfa_enabled else 0)


@routes.route("POST", "/v1/me/mfa/totp/setup", permission="session", reauth=True, response=TotpSetup,
              summary="Start TOTP enrolment: a new secret (not active until confirmed)")
async def totp_setup(call: Call) -> TotpSetup:
    if call.principal.mfa_enabled:
        raise ApiError("conflict", "Two-factor authentication is already on.")
    secret = totp.generate_secret()
    blob = call.app[keys.ENCRYPTOR].encrypt(secret, totp_aad(call.user_id))
    async with call.db() as conn:
        await conn.execute(
            "UPDATE users SET totp_secret_enc = $2, totp_last_step = NULL WHERE id = $1 AND totp_enabled_at IS NULL",
            call.user_id, blob)
        await call.auth_event(conn, "mfa.setup_started", True)
    return TotpSetup(secret=totp.secret_to_base32(secret),
                     otpauth_uri=totp.provisioning_uri(secret, call.principal.email, "Convot"))


@routes.route("POST", "/v1/me/mfa/totp/enable", permission="session", reauth=True, body=MfaChange,
              response=RecoveryCodes, summary="Confirm enrolment with a first code; answers the recovery codes once")
async def totp_enable(call: Call) -> RecoveryCodes:
    p = call.principal
    if p.mfa_enabled:
        raise ApiError("conflict", "Two-factor authentication is already on.")
    code = totp.normalise_code(call.body.code)
    async with call.db() as conn:
        if not await check_totp(conn, call.app[keys.ENCRYPTOR], p.user_id, code, pending=True):
            raise ApiError("mfa_invalid")
        await conn.execute("UPDATE users SET totp_enabled_at = now() WHERE id = $1", p.user_id)
        codes = await replace_recovery_codes(conn, p.user_id)
        await conn.execute("UPDATE user_sessions SET mfa_verified = true WHERE id = $1", p.session.id)
        revoked = await revoke_user_sessions(conn, p.user_id, keep=p.session.id) if call.body.revoke_other_sessions else 0
        await call.auth_event(conn, "mfa.enabled", True, details={"revoked_sessions": revoked})
    call.app[keys.OUTBOX].enqueue(mails.mfa_changed(call.config, p.email, True))
    if revoked:
        await end_gateway_sockets(call.app, p.user_id)
    return RecoveryCodes(recovery_codes=codes, revoked_sessions=revoked)


@routes.route("POST", "/v1/me/mfa/totp/disable", permission="session", reauth=True, body=MfaChange,
              response=Disabled, summary="Turn two-factor authentication off (needs a current code)")
async def totp_disable(call: Call) -> Disabled:
    p = call.principal
    if not p.mfa_enabled:
        raise ApiError("conflict", "Two-factor authentication is not on.")
    async with call.db() as conn:
        requiring = await conn.fetchval(
            "SELECT count(*) FROM members m JOIN organisations o ON o.id = m.org_id "
            "WHERE m.user_id = $1 AND o.require_mfa", p.user_id)
        if requiring:
            raise ApiError("conflict", "An organisation you belong to requires two-factor authentication.",
                           details={"organisations": requiring})
        method = await throttled_second_factor(call, conn, p.user_id, call.body.code, "mfa.disable")
        if method is not None:
            await conn.execute(
                "UPDATE users SET totp_secret_enc = NULL, totp_enabled_at = NULL, totp_last_step = NULL WHERE id = $1",
                p.user_id)
            await conn.execute("DELETE FROM recovery_codes WHERE user_id = $1", p.user_id)
            revoked = (await revoke_user_sessions(conn, p.user_id, keep=p.session.id)
                       if call.body.revoke_other_sessions else 0)
            await call.auth_event(conn, "mfa.disabled", True, details={"revoked_sessions": revoked})
    if method is None:
        raise ApiError("mfa_invalid")
    call.app[keys.OUTBOX].enqueue(mails.mfa_changed(call.config, p.email, False))
    if revoked:
        await end_gateway_sockets(call.app, p.user_id)
    return Disabled(enabled=False, revoked_sessions=revoked)


@routes.route("POST", "/v1/me/mfa/recovery-codes", permission="session", reauth=True, body=MfaCode,
              response=RecoveryCodes, summary="Replace your recovery codes (the old ones stop working)")
async def regenerate_recovery_codes(call: Call) -> RecoveryCodes:
    p = call.principal
    if not p.mfa_enabled:
        raise ApiError("conflict", "Two-factor authentication is not on.")
    async with call.db() as conn:
        method = await throttled_second_factor(call, conn, p.user_id, call.body.code, "mfa.recovery_codes_regenerated")
        if method is not None:
            codes = await replace_recovery_codes(conn, p.user_id)
            await call.auth_event(conn, "mfa.recovery_codes_regenerated", True)
    if method is None:
        raise ApiError("mfa_invalid")
    return RecoveryCodes(recovery_codes=codes, revoked_sessions=0)
