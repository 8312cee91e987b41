"""Accounts: sign-up, verification, sign-in/out, password change and reset, no enumeration."""

import asyncio

from admin_api import keys
from tests.admin_api.conftest import PASSWORD, make_user, new_email, remember, signed_in, token_from, wait_for_mail


async def jobs_done(app):
    await app[keys.JOBS].join()


async def test_signup_verify_then_login(client, app):
    email = new_email("signup")
    answer = await client.call("POST", "/v1/auth/signup", {"email": email, "password": PASSWORD, "name": "Ana"})
    assert (answer.status, answer.body) == (202, {"status": "accepted"})
    mail = await wait_for_mail(app, email, "Confirm your email")
    token = token_from(mail)
    assert "/app/verify-email#token=" in mail.text

    early = await client.login(email)
    assert (early.status, early.code) == (403, "email_unverified")

    ok = await client.call("POST", "/v1/auth/verify-email", {"token": token})
    assert ok.status == 200
    again = await client.call("POST", "/v1/auth/verify-email", {"token": token})
    assert (again.status, again.code) == (400, "token_invalid")

    login = await client.login(email)
    assert login.status == 200 and login.body["mfa_required"] is False
    me = await client.call("GET", "/v1/me")
    assert me.body["email"] == email and me.body["name"] == "Ana" and me.body["email_verified"] is True


async def test_signup_of_an_existing_email_answers_the_same_and_mails_the_owner(client, app):
    _, email, _ = await make_user(app)
    answer = await client.call("POST", "/v1/auth/signup", {"email": email.upper(), "password": "another long password"})
    assert (answer.status, answer.body) == (202, {"status": "accepted"})
    mail = await wait_for_mail(app, email.upper(), "tried to sign up")
    assert "forgot-password" in mail.text
    # the existing account is untouched: the original password still works
    assert (await client.login(email)).status == 200


async def test_signup_refuses_a_weak_password_before_anything_happens(client):
    answer = await client.call("POST", "/v1/auth/signup", {"email": new_email(), "password": "short"})
    assert (answer.status, answer.code) == (422, "unprocessable_entity")
    assert answer.body["error"]["details"]["field"] == "password"


async def test_wrong_password_and_unknown_email_get_the_same_answer(client, app):
    _, email, _ = await make_user(app)
    wrong = await client.login(email, "not the password at all")
    unknown = await client.login(new_email("nobody"), "not the password at all")
    assert (wrong.status, wrong.body) == (401, {"error": {"code": "invalid_credentials",
                                                          "message": "Wrong email or password.", "details": {}}})
    assert (unknown.status, unknown.body) == (wrong.status, wrong.body)
    assert set(wrong.headers) - {"Date", "X-Request-ID", "Content-Length"} == \
        set(unknown.headers) - {"Date", "X-Request-ID", "Content-Length"}


async def test_a_100_byte_password_works_end_to_end(client, app):
    long_password = "long passphrase " * 5 + "ä" * 10  # 80 + 20 = 100 bytes in UTF-8
    assert len(long_password.encode()) == 100
    remember(long_password)
    email = new_email("long")
    assert (await client.call("POST", "/v1/auth/signup", {"email": email, "password": long_password})).status == 202
    token = token_from(await wait_for_mail(app, email, "Confirm"))
    assert (await client.call("POST", "/v1/auth/verify-email", {"token": token})).status == 200
    assert (await client.login(email, long_password)).status == 200
    # the same first 72 bytes with a different ending do not
    other = await client.login(email, long_password[:-1] + "ö")
    assert other.code == "invalid_credentials"


async def test_login_issues_a_new_session_id_each_time_and_logout_ends_it(client_factory, app):
    _, email, _ = await make_user(app)
    c = await client_factory()
    await c.login(email)
    first = c.session_cookie()
    await c.login(email)
    second = c.session_cookie()
    assert first and second and first != second
    # the earlier session is dead
    stale = await client_factory()
    stale.http.cookie_jar.update_cookies({"convot_session": first})
    assert (await stale.call("GET", "/v1/me")).code == "unauthorized"

    assert (await c.call("POST", "/v1/auth/logout")).status == 204
    assert (await c.call("GET", "/v1/me")).status == 401


async def test_session_cookie_is_httponly_samesite_and_not_secure_over_plain_http(client, app):
    _, email, _ = await make_user(app)
    answer = await client.login(email)
    cookie = next(c for c in client.http.cookie_jar if c.key == "convot_session")
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
    assert not cookie["secure"]
    csrf = next(c for c in client.http.cookie_jar if c.key == "convot_csrf")
    assert csrf.value == answer.body["csrf_token"] and not csrf["httponly"]


async def test_password_change_needs_the_current_password_and_ends_other_sessions(client_factory, app):
    c, user_id, _ = await signed_in(client_factory, app)
    other = await client_factory()
    await other.login(c.email)
    new_password = "a brand new passphrase 42"
    remember(new_password)
    wrong = await c.call("POST", "/v1/auth/password/change",
                         {"current_password": "wrong wrong wrong", "new_password": new_password})
    assert wrong.code == "invalid_credentials"
    ok = await c.call("POST", "/v1/auth/password/change", {"current_password": PASSWORD, "new_password": new_password})
    assert ok.status == 200 and ok.body["revoked_sessions"] == 1
    assert (await c.call("GET", "/v1/me")).status == 200
    assert (await other.call("GET", "/v1/me")).status == 401
    assert (await c.login(c.email, new_password)).status == 200
    await wait_for_mail(app, c.email, "password was changed")


async def test_password_change_can_keep_other_sessions(client_factory, app):
    c, _, _ = await signed_in(client_factory, app)
    other = await client_factory()
    await other.login(c.email)
    ok = await c.call("POST", "/v1/auth/password/change",
                      {"current_password": PASSWORD, "new_password": "yet another passphrase", "revoke_other_sessions": False})
    remember("yet another passphrase")
    assert ok.body["revoked_sessions"] == 0
    assert (await other.call("GET", "/v1/me")).status == 200


async def test_reset_by_single_use_token_ends_every_session(client_factory, app):
    c, user_id, _ = await signed_in(client_factory, app)
    anon = await client_factory()
    answer = await anon.call("POST", "/v1/auth/password/reset-request", {"email": c.email})
    assert (answer.status, answer.body) == (202, {"status": "accepted"})
    token = token_from(await wait_for_mail(app, c.email, "Reset your Convot password"))
    new_password = "reset passphrase number 1"
    remember(new_password)
    weak = await anon.call("POST", "/v1/auth/password/reset", {"token": token, "new_password": "short"})
    assert weak.code == "unprocessable_entity"
    ok = await anon.call("POST", "/v1/auth/password/reset", {"token": token, "new_password": new_password})
    assert ok.status == 200
    reused = await anon.call("POST", "/v1/auth/password/reset", {"token": token, "new_password": "another passphrase 2"})
    assert (reused.status, reused.code) == (400, "token_invalid")
    assert (await c.call("GET", "/v1/me")).status == 401
    assert (await anon.login(c.email, new_password)).status == 200
    assert (await anon.login(c.email, PASSWORD)).code == "invalid_credentials"


async def test_an_expired_reset_token_is_refused(client, app):
    user_id, email, _ = await make_user(app)
    assert (await client.call("POST", "/v1/auth/password/reset-request", {"email": email})).status == 202
    token = token_from(await wait_for_mail(app, email, "Reset your"))
    async with app[keys.DB].acquire() as conn:
        await conn.execute("UPDATE auth_tokens SET expires_at = now() - interval '1 second' WHERE user_id = $1", user_id)
    answer = await client.call("POST", "/v1/auth/password/reset", {"token": token, "new_password": "fresh passphrase 9"})
    assert answer.code == "token_invalid"


async def test_reset_request_answers_the_same_for_unknown_emails_and_sends_nothing(client, app):
    unknown = new_email("ghost")
    answer = await client.call("POST", "/v1/auth/password/reset-request", {"email": unknown})
    assert (answer.status, answer.body) == (202, {"status": "accepted"})
    await jobs_done(app)
    await asyncio.sleep(0.2)
    assert not [m for m in app[keys.CATCH_ALL].messages() if unknown in m.to]


async def test_reset_verifies_an_unverified_email(client, app):
    _, email, _ = await make_user(app, verified=False)
    await client.call("POST", "/v1/auth/password/reset-request", {"email": email})
    token = token_from(await wait_for_mail(app, email, "Reset your"))
    remember("verified by reset 77")
    assert (await client.call("POST", "/v1/auth/password/reset", {"token": token, "new_password": "verified by reset 77"})).status == 200
    assert (await client.login(email, "verified by reset 77")).status == 200


async def test_profile_update_and_email_change_needs_reauth_and_confirmation(client_factory, app):
    c, user_id, _ = await signed_in(client_factory, app)
    renamed = await c.call("PATCH", "/v1/me", {"name": "Renamed"})
    assert renamed.body["name"] == "Renamed"
    new = new_email("moved")
    async with app[keys.DB].acquire() as conn:
        await conn.execute("UPDATE user_sessions SET reauth_at = NULL WHERE user_id = $1", user_id)
    need = await c.call("POST", "/v1/me/email", {"email": new})
    assert (need.status, need.code) == (403, "reauth_required")
    assert (await c.reauth()).status == 200
    assert (await c.call("POST", "/v1/me/email", {"email": new})).status == 202
    await wait_for_mail(app, c.email, "change of your Convot email")
    token = token_from(await wait_for_mail(app, new, "Confirm your new email"))
    done = await c.call("POST", "/v1/me/email/confirm", {"token": token})
    assert done.status == 200 and done.body["email"] == new
    assert (await c.login(new)).status == 200


async def test_email_change_to_a_taken_address_fails_only_at_confirmation(client_factory, app):
    c, _, _ = await signed_in(client_factory, app)
    _, taken, _ = await make_user(app)
    assert (await c.call("POST", "/v1/me/email", {"email": taken})).status == 202
    token = token_from(await wait_for_mail(app, taken, "Confirm your new email"))
    answer = await c.call("POST", "/v1/me/email/confirm", {"token": token})
    assert (answer.status, answer.code) == (409, "conflict")


async def test_another_users_email_change_token_does_not_work_for_me(client_factory, app):
    a, _, _ = await signed_in(client_factory, app)
    b, _, _ = await signed_in(client_factory, app)
    target = new_email("target")
    assert (await a.call("POST", "/v1/me/email", {"email": target})).status == 202
    token = token_from(await wait_for_mail(app, target, "Confirm your new email"))
    assert (await b.call("POST", "/v1/me/email/confirm", {"token": token})).code == "token_invalid"
    # and it was not burnt by the attempt
    assert (await a.call("POST", "/v1/me/email/confirm", {"token": token})).status == 200
