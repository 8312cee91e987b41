"""Server-side sessions: list, revoke, expiry, and CSRF on every state-changing cookie request."""

from admin_api import keys
from tests.admin_api.conftest import make_user, signed_in


async def test_sessions_can_be_listed_and_revoked(client_factory, app):
    c, user_id, _ = await signed_in(client_factory, app)
    other = await client_factory()
    await other.login(c.email)
    listed = await c.call("GET", "/v1/me/sessions")
    assert listed.status == 200 and len(listed.body["items"]) == 2
    mine = [s for s in listed.body["items"] if s["current"]]
    theirs = [s for s in listed.body["items"] if not s["current"]]
    assert len(mine) == 1 and len(theirs) == 1
    assert theirs[0]["ip"] == other.ip  # the client address behind the trusted proxy
    assert c.session_cookie() not in str(listed.body)

    assert (await c.call("DELETE", f"/v1/me/sessions/{theirs[0]['id']}")).status == 204
    assert (await other.call("GET", "/v1/me")).status == 401
    assert (await c.call("DELETE", f"/v1/me/sessions/{theirs[0]['id']}")).code == "not_found"
    assert (await c.call("DELETE", "/v1/me/sessions/not-a-session-id")).code == "not_found"


async def test_revoke_others_keeps_only_the_current_session(client_factory, app):
    c, _, _ = await signed_in(client_factory, app)
    others = [await client_factory() for _ in range(2)]
    for o in others:
        await o.login(c.email)
    answer = await c.call("POST", "/v1/me/sessions/revoke-others")
    assert answer.body == {"revoked": 2}
    assert [(await o.call("GET", "/v1/me")).status for o in others] == [401, 401]
    assert (await c.call("GET", "/v1/me")).status == 200


async def test_revoking_the_current_session_signs_out(client_factory, app):
    c, _, _ = await signed_in(client_factory, app)
    current = next(s for s in (await c.call("GET", "/v1/me/sessions")).body["items"] if s["current"])
    assert (await c.call("DELETE", f"/v1/me/sessions/{current['id']}")).status == 204
    assert (await c.call("GET", "/v1/me")).status == 401


async def test_idle_and_expired_sessions_end(client_factory, app):
    c, user_id, _ = await signed_in(client_factory, app)
    async with app[keys.DB].acquire() as conn:
        await conn.execute("UPDATE user_sessions SET last_seen_at = now() - interval '4 days' WHERE user_id = $1", user_id)
    assert (await c.call("GET", "/v1/me")).status == 401
    d, user2, _ = await signed_in(client_factory, app)
    async with app[keys.DB].acquire() as conn:
        await conn.execute("UPDATE user_sessions SET expires_at = now() - interval '1 second' WHERE user_id = $1", user2)
    assert (await d.call("GET", "/v1/me")).status == 401


async def test_a_garbage_or_stale_cookie_does_not_stop_signing_in(client_factory, app):
    _, email, _ = await make_user(app)
    c = await client_factory()
    c.http.cookie_jar.update_cookies({"convot_session": "garbage"})
    assert (await c.call("GET", "/v1/me")).code == "unauthorized"
    assert (await c.login(email)).status == 200


async def test_state_changing_cookie_requests_need_the_csrf_token(client_factory, app):
    c, _, _ = await signed_in(client_factory, app)
    body = {"name": "New name"}
    missing = await c.call("PATCH", "/v1/me", body, csrf=False)
    assert (missing.status, missing.code) == (403, "csrf_failed")
    wrong = await c.call("PATCH", "/v1/me", body, csrf=False, headers={"X-CSRF-Token": "x" * 43})
    assert wrong.code == "csrf_failed"
    # another session's token does not fit this session
    d, _, _ = await signed_in(client_factory, app)
    assert (await c.call("PATCH", "/v1/me", body, csrf=False, headers={"X-CSRF-Token": d.csrf})).code == "csrf_failed"
    # reads need none
    assert (await c.call("GET", "/v1/me", csrf=False)).status == 200
    assert (await c.call("PATCH", "/v1/me", body)).status == 200


async def test_cross_site_browser_requests_are_refused_even_with_a_token(client_factory, app):
    c, _, _ = await signed_in(client_factory, app)
    foreign = await c.call("PATCH", "/v1/me", {"name": "x"}, headers={"Origin": "https://evil.example"})
    assert foreign.code == "csrf_failed"
    cross = await c.call("PATCH", "/v1/me", {"name": "x"}, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.code == "csrf_failed"
    same = await c.call("PATCH", "/v1/me", {"name": "x"}, headers={"Origin": "http://127.0.0.1:8080"})
    assert same.status == 200
    # sign-in from a foreign page (login CSRF) is refused as well
    _, email, _ = await make_user(app)
    e = await client_factory()
    assert (await e.call("POST", "/v1/auth/login", {"email": email, "password": "x"},
                         headers={"Origin": "https://evil.example"})).code == "csrf_failed"


async def test_current_session_view(client_factory, app):
    c, user_id, _ = await signed_in(client_factory, app)
    answer = await c.call("GET", "/v1/auth/session")
    assert answer.body["user_id"] == str(user_id) and answer.body["mfa_pending"] is False
