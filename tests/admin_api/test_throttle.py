"""Brute-force protection: Redis sliding windows per account and per IP, 429 + Retry-After,
and a locked-out attacker cannot lock the real user out of password reset."""

import uuid

from admin_api import keys
from admin_api.throttle import Limit, Throttle, throttle_key
from tests.admin_api.conftest import make_user, new_email, remember, signed_in, token_from, wait_for_mail


async def test_sliding_window_script(redis_client):
    throttle = Throttle(redis_client)
    limit = Limit("t_" + uuid.uuid4().hex[:8], 3, 60)
    other = Limit("u_" + uuid.uuid4().hex[:8], 100, 60)
    for _ in range(3):
        assert await throttle.hit((limit, "s"), (other, "s")) == 0
    wait = await throttle.hit((limit, "s"), (other, "s"))
    assert 0 < wait <= 60_000
    # a refused hit records nothing anywhere
    assert await redis_client.zcard(throttle_key(other, "s")) == 3
    assert await throttle.peek((limit, "another subject")) == 0
    await throttle.clear((limit, "s"))
    assert await throttle.peek((limit, "s")) == 0


async def test_add_counts_failures_and_keeps_at_most_limit_entries(redis_client):
    throttle = Throttle(redis_client)
    limit = Limit("f_" + uuid.uuid4().hex[:8], 2, 60)
    for _ in range(5):
        await throttle.add((limit, "x"))
    key = throttle_key(limit, "x")
    assert await redis_client.zcard(key) == 2
    assert 0 < await redis_client.pttl(key) <= 60_000
    assert await throttle.peek((limit, "x")) > 0


async def test_throttle_keys_hold_no_email_or_ip_in_clear():
    key = throttle_key(Limit("login_account", 1, 1), "ana@example.com")
    assert "ana" not in key and "example" not in key
    assert key.startswith("cv:{throttle}:login_account:")


async def test_twenty_wrong_logins_lock_account_and_ip_but_not_reset(client_factory, app):
    _, email, _ = await make_user(app)
    attacker = await client_factory()
    answers = [await attacker.login(email, f"guess number {i}") for i in range(20)]
    assert [a.code for a in answers[:10]] == ["invalid_credentials"] * 10  # login_account_limit = 10
    assert all(a.status == 429 for a in answers[10:])
    blocked = await attacker.login(email, "guess 21")
    assert blocked.status == 429 and blocked.code == "rate_limited"
    assert 1 <= int(blocked.headers["Retry-After"]) <= 900
    assert blocked.body["error"]["details"]["retry_after"] == int(blocked.headers["Retry-After"])

    # the account is locked from anywhere, even with the right password...
    real = await client_factory()
    assert (await real.login(email)).status == 429

    # ...and the IP (20 attempts: failed or refused) is locked for every account
    _, other_email, _ = await make_user(app)
    assert (await attacker.login(other_email)).status == 429

    # The real user resets the password (even from the attacker's address) and signs in again.
    for who in (real, attacker):
        assert (await who.call("POST", "/v1/auth/password/reset-request", {"email": email})).status == 202
    token = token_from(await wait_for_mail(app, email, "Reset your Convot password"))
    remember("after the attack 2026")
    reset = await real.call("POST", "/v1/auth/password/reset", {"token": token, "new_password": "after the attack 2026"})
    assert reset.status == 200
    assert (await real.login(email, "after the attack 2026")).status == 200
    # the attacker's IP stays blocked
    assert (await attacker.login(email, "after the attack 2026")).status == 429

    async with app[keys.DB].acquire() as conn:
        events = await conn.fetch("SELECT event, success FROM auth_events e JOIN users u ON u.id = e.user_id "
                                  "WHERE u.email = $1 ORDER BY e.id", email)
    names = [e["event"] for e in events]
    assert names.count("login") >= 11 and "login.locked" in names and "password.reset" in names


async def test_flooding_reset_requests_cannot_stop_the_owner_resetting(client_factory, app):
    _, email, _ = await make_user(app)
    attackers = [await client_factory() for _ in range(2)]
    for attacker in attackers:
        for _ in range(12):
            await attacker.call("POST", "/v1/auth/password/reset-request", {"email": email})
    # the attacker's own IP is throttled (reset_ip_limit = 10)...
    last = await attackers[0].call("POST", "/v1/auth/password/reset-request", {"email": email})
    assert last.status == 429 and "Retry-After" in last.headers
    # ...while the owner's request is still accepted, and every mailed link works
    owner = await client_factory()
    assert (await owner.call("POST", "/v1/auth/password/reset-request", {"email": email})).status == 202
    await app[keys.JOBS].join()
    await app[keys.OUTBOX].join()        # the jobs queue the mails; the outbox delivers them after
    mails = [m for m in app[keys.CATCH_ALL].messages() if email in m.to and "Reset" in m.subject]
    assert 1 <= len(mails) <= 3  # reset_account_limit mails per window, no more
    token = token_from(mails[-1])
    remember("owner wins the race 1")
    assert (await owner.call("POST", "/v1/auth/password/reset",
                             {"token": token, "new_password": "owner wins the race 1"})).status == 200


async def test_wrong_mfa_codes_are_throttled_per_account(client_factory, app):
    user_id, email, helper = await make_user(app, mfa=True)
    c = await client_factory()
    assert (await c.login(email)).body["mfa_required"] is True
    for _ in range(5):  # mfa_user_limit
        assert (await c.call("POST", "/v1/auth/mfa", {"code": "000000"})).code == "mfa_invalid"
    assert (await c.call("POST", "/v1/auth/mfa", {"code": helper.code()})).status == 429
    # from another address too: the account's budget is spent
    d = await client_factory()
    await d.login(email)
    assert (await d.call("POST", "/v1/auth/mfa", {"code": "123456"})).status == 429


async def test_wrong_tokens_are_throttled_per_ip(client):
    for _ in range(30):
        await client.call("POST", "/v1/auth/verify-email", {"token": "A" * 43})
    answer = await client.call("POST", "/v1/auth/verify-email", {"token": "B" * 43})
    assert answer.status == 429


async def test_sign_up_is_throttled_per_ip(client):
    for _ in range(10):
        await client.call("POST", "/v1/auth/signup", {"email": new_email("flood"), "password": "a flood of sign ups"})
    answer = await client.call("POST", "/v1/auth/signup", {"email": new_email("flood"), "password": "a flood of sign ups"})
    assert answer.status == 429


async def test_reauth_wrong_passwords_count_towards_the_login_lock(client_factory, app):
    c, _, _ = await signed_in(client_factory, app)
    for _ in range(10):
        assert (await c.reauth("wrong password!!")).code == "invalid_credentials"
    assert (await c.reauth()).status == 429
