"""MFA: TOTP enrolment with recovery codes, the sign-in step, no code reuse, re-authentication,
and organisations that require MFA."""

import base64

from admin_api import keys, totp
from admin_api.mfa import recovery_code_hash
from tests.admin_api.conftest import (TotpUser, add_member, make_org, make_user, remember, signed_in,
                                      wait_for_mail)


def helper_from_setup(body) -> TotpUser:
    secret = base64.b32decode(body["secret"] + "=" * (-len(body["secret"]) % 8))
    remember(body["secret"], body["otpauth_uri"])
    return TotpUser(secret)


async def test_enrol_then_sign_in_with_totp_and_with_recovery_codes(client_factory, app):
    c, user_id, _ = await signed_in(client_factory, app)
    other = await client_factory()
    await other.login(c.email)

    setup = await c.call("POST", "/v1/me/mfa/totp/setup")
    assert setup.status == 200 and setup.body["otpauth_uri"].startswith("otpauth://totp/Convot:")
    helper = helper_from_setup(setup.body)
    assert (await c.call("POST", "/v1/me/mfa/totp/enable", {"code": "000000"})).code == "mfa_invalid"
    enabled = await c.call("POST", "/v1/me/mfa/totp/enable", {"code": helper.code()})
    assert enabled.status == 200
    codes = enabled.body["recovery_codes"]
    remember(*codes)
    assert len(codes) == 10 and len(set(codes)) == 10 and enabled.body["revoked_sessions"] == 1
    assert (await other.call("GET", "/v1/me")).status == 401   # other sessions ended
    assert (await c.call("GET", "/v1/me")).body["mfa_enabled"] is True
    await wait_for_mail(app, c.email, "Two-factor authentication was turned on")

    async with app[keys.DB].acquire() as conn:
        stored = await conn.fetch("SELECT code_hash FROM recovery_codes WHERE user_id = $1", user_id)
        blob = await conn.fetchval("SELECT totp_secret_enc FROM users WHERE id = $1", user_id)
    assert len(stored) == 10 and not {r["code_hash"] for r in stored} & set(codes)
    assert helper.secret not in bytes(blob)

    # sign-in now stops half-way
    d = await client_factory()
    login = await d.login(c.email)
    assert login.body["mfa_required"] is True
    partial_cookie = d.session_cookie()
    half = await d.call("GET", "/v1/me")
    assert (half.status, half.code) == (401, "mfa_required")
    assert (await d.call("GET", "/v1/auth/session")).body["mfa_pending"] is True
    assert (await d.call("POST", "/v1/auth/mfa", {"code": "123456"})).code == "mfa_invalid"

    # a code already used (the enrolment code) is refused; a fresh one passes and rotates the session
    used = totp.hotp(helper.secret, helper.step_used)
    assert (await d.call("POST", "/v1/auth/mfa", {"code": used})).code == "mfa_invalid"
    code = helper.code()
    ok = await d.call("POST", "/v1/auth/mfa", {"code": code})
    assert ok.status == 200 and ok.body["method"] == "totp"
    d.csrf = ok.body["csrf_token"]
    assert d.session_cookie() != partial_cookie
    assert (await d.call("GET", "/v1/me")).status == 200

    # the same code again, in another sign-in, is refused
    e = await client_factory()
    await e.login(c.email)
    assert (await e.call("POST", "/v1/auth/mfa", {"code": code})).code == "mfa_invalid"
    # a recovery code works once
    rec = await e.call("POST", "/v1/auth/mfa", {"code": codes[0].upper()})
    assert rec.status == 200 and rec.body["method"] == "recovery_code"
    f = await client_factory()
    await f.login(c.email)
    assert (await f.call("POST", "/v1/auth/mfa", {"code": codes[0]})).code == "mfa_invalid"
    assert (await c.call("GET", "/v1/me/mfa")).body == {"enabled": True, "recovery_codes_remaining": 9}


async def test_partial_session_can_only_do_the_mfa_step_and_logout(client_factory, app):
    _, email, _ = await make_user(app, mfa=True)
    c = await client_factory()
    await c.login(email)
    for method, path in (("GET", "/v1/orgs"), ("GET", "/v1/me/sessions"), ("POST", "/v1/auth/reauth")):
        answer = await c.call(method, path, {"password": "x"} if method == "POST" else None)
        assert answer.code == "mfa_required", path
    assert (await c.call("POST", "/v1/auth/logout")).status == 204
    assert (await c.call("POST", "/v1/auth/mfa", {"code": "123456"})).status == 401


async def test_enrolment_and_disabling_need_a_recent_reauthentication(client_factory, app):
    c, user_id, helper = await signed_in(client_factory, app, mfa=True)
    async with app[keys.DB].acquire() as conn:
        await conn.execute("UPDATE user_sessions SET reauth_at = now() - interval '1 hour' WHERE user_id = $1", user_id)
    stale = await c.call("POST", "/v1/me/mfa/totp/disable", {"code": "123456"})
    assert (stale.status, stale.code) == (403, "reauth_required")
    # with MFA on, re-authentication needs the password AND a code
    assert (await c.reauth()).code == "mfa_required"
    assert (await c.reauth(code="000000")).code == "mfa_invalid"
    assert (await c.reauth("wrong password here", code="123456")).code == "invalid_credentials"
    assert (await c.reauth(code=helper.code())).status == 200
    # disabling asks for a code once more (here a recovery code: TOTP steps of this window are spent)
    assert (await c.call("POST", "/v1/me/mfa/totp/disable", {"code": "aaaa-bbbb-cccc-dddd"})).code == "mfa_invalid"
    async with app[keys.DB].acquire() as conn:
        await conn.execute("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)", user_id,
                           recovery_code_hash(user_id, "aaaa-bbbb-cccc-dddd"))
    remember("aaaa-bbbb-cccc-dddd")
    off = await c.call("POST", "/v1/me/mfa/totp/disable", {"code": "aaaa-bbbb-cccc-dddd"})
    assert off.status == 200 and off.body["enabled"] is False
    assert (await c.call("GET", "/v1/me/mfa")).body == {"enabled": False, "recovery_codes_remaining": 0}
    await wait_for_mail(app, c.email, "turned off")


async def test_recovery_codes_can_be_regenerated_and_the_old_ones_die(client_factory, app):
    c, user_id, helper = await signed_in(client_factory, app, mfa=True)
    async with app[keys.DB].acquire() as conn:
        await conn.execute("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)", user_id,
                           recovery_code_hash(user_id, "eeee-ffff-gggg-hhhh"))
    remember("eeee-ffff-gggg-hhhh")
    fresh = await c.call("POST", "/v1/me/mfa/recovery-codes", {"code": helper.code()})
    assert fresh.status == 200 and len(fresh.body["recovery_codes"]) == 10
    remember(*fresh.body["recovery_codes"])
    d = await client_factory()
    await d.login(c.email)
    assert (await d.call("POST", "/v1/auth/mfa", {"code": "eeee-ffff-gggg-hhhh"})).code == "mfa_invalid"
    assert (await d.call("POST", "/v1/auth/mfa", {"code": fresh.body["recovery_codes"][3]})).status == 200


async def test_setup_twice_or_enable_twice_conflicts(client_factory, app):
    c, _, helper = await signed_in(client_factory, app, mfa=True)
    assert (await c.call("POST", "/v1/me/mfa/totp/setup")).code == "conflict"
    assert (await c.call("POST", "/v1/me/mfa/totp/enable", {"code": "123456"})).code == "conflict"


async def test_an_organisation_can_require_mfa_and_members_are_led_to_enrol(client_factory, app):
    owner, owner_id, owner_totp = await signed_in(client_factory, app, mfa=True)
    org_id = await make_org(app, owner_id)
    agent, agent_id, _ = await signed_in(client_factory, app)
    await add_member(app, org_id, agent_id, "agent")
    assert (await agent.call("GET", f"/v1/orgs/{org_id}")).status == 200

    # an owner without MFA cannot require it
    plain_owner, plain_id, _ = await signed_in(client_factory, app)
    await add_member(app, org_id, plain_id, "owner")
    refused = await plain_owner.call("POST", f"/v1/orgs/{org_id}/require-mfa", {"require_mfa": True})
    assert refused.code == "conflict"

    on = await owner.call("POST", f"/v1/orgs/{org_id}/require-mfa", {"require_mfa": True})
    assert on.status == 200 and on.body["require_mfa"] is True
    led = await agent.call("GET", f"/v1/orgs/{org_id}/members")
    assert (led.status, led.code) == (403, "mfa_enrollment_required")
    assert led.body["error"]["details"]["setup"] == "/v1/me/mfa/totp/setup"
    me = await agent.call("GET", "/v1/me")
    assert me.body["organisations"][0]["mfa_enrollment_required"] is True

    # enrolling opens the organisation again
    setup = await agent.call("POST", "/v1/me/mfa/totp/setup")
    helper = helper_from_setup(setup.body)
    enabled = await agent.call("POST", "/v1/me/mfa/totp/enable", {"code": helper.code()})
    remember(*enabled.body["recovery_codes"])
    assert (await agent.call("GET", f"/v1/orgs/{org_id}/members")).status == 200
    # and MFA cannot be switched off while an organisation requires it
    off = await agent.call("POST", "/v1/me/mfa/totp/disable", {"code": enabled.body["recovery_codes"][0]})
    assert off.code == "conflict"
