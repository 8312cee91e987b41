"""POST /v1/widget/session (contract: docs/widget.md): tokens, visitor tokens, identity
verification, contact matching and merging, CORS, throttling."""

import uuid

import pytest

from admin_api import keys
from convot.db import scoped
from convot.tokens import TokenVerifier
from engine import keys as engine_keys
from engine.availability import Presence
from engine.worker import Worker
from tests.admin_api.conftest import add_member, remember, signed_in
from tests.admin_api.developer import create_app, owner_with_org, user_hash

ORIGIN = "https://shop.example.com"
IP_LIMIT = 25


@pytest.fixture(scope="module")
def api_config(servers):
    from convot.embedded import free_port

    return servers.config(smtp={"port": free_port()}, admin_api={"trusted_proxies": "127.0.0.1/32"},
                          rest_api={"widget_session_ip_limit": IP_LIMIT})


class Browser:
    """One shopper's browser: keeps its visitor token like the widget does."""

    def __init__(self, client, app_key, origin=ORIGIN):
        self.client, self.app_key, self.origin = client, app_key, origin
        self.visitor_token = None

    async def session(self, identify=None, *, keep=True, origin=None):
        body = {"app_id": self.app_key, "visitor_token": self.visitor_token, "identify": identify}
        answer = await self.client.call("POST", "/v1/widget/session", body, headers={"Origin": origin or self.origin})
        if answer.status == 200:
            remember(answer.body["visitor_token"], answer.body["token"])
            if keep:
                self.visitor_token = answer.body["visitor_token"]
        return answer


@pytest.fixture
async def shop(client_factory, app):
    owner, owner_id, org = await owner_with_org(client_factory, app, "Shop Org")
    created, secret = await create_app(owner, org, allowed_origins=[ORIGIN],
                                       settings={"color": "#0f766e", "greeting": "Hi there"})

    async def browser(origin=ORIGIN):
        return Browser(await client_factory(), created["public_key"], origin)

    class Shop:
        pass

    s = Shop()
    s.owner, s.owner_id, s.org, s.app, s.secret, s.browser = owner, owner_id, org, created, secret, browser
    return s


async def persist(app):
    worker = Worker(app[keys.CONFIG], redis=app[keys.REDIS], pool=app[keys.DB], consumer=f"t-{uuid.uuid4().hex[:6]}")
    await worker.setup()
    while await worker.step():
        pass


async def contact_row(app, org, contact_id):
    async with scoped(app[keys.DB], org_id=org) as conn:
        return await conn.fetchrow("SELECT * FROM contacts WHERE id = $1", uuid.UUID(contact_id))


async def test_anonymous_session_answers_the_documented_shape(app, shop):
    b = await shop.browser()
    answer = await b.session()
    assert answer.status == 200, answer.body
    body = answer.body
    assert set(body) == {"token", "expires_at", "visitor_token", "gateway_url", "contact", "app", "conversations", "team"}
    assert body["visitor_token"].startswith("vt_") and len(body["visitor_token"]) >= 32
    assert body["gateway_url"] == app[keys.CONFIG].admin_api.gateway_public_url
    assert body["app"] == {"name": "Northwind Support", "settings": {"color": "#0f766e", "greeting": "Hi there",
                                                                      "default_section": "conversation",
                                                                      "email_prompt": True}}
    assert body["conversations"] == [] and body["contact"]["verified"] is False
    assert body["team"]["online"] is False and body["team"]["agents"][0]["id"] == str(shop.owner_id)
    claims = TokenVerifier(app[keys.CONFIG]).verify(body["token"])
    assert claims.role == "shopper" and claims.org == str(shop.org) and claims.app_id == shop.app["id"]
    assert claims.contact_id == body["contact"]["id"] and claims.exp == body["expires_at"]
    assert claims.exp - claims.iat <= 900
    # CORS for the app's origin, exactly
    h = answer.headers
    assert h["Access-Control-Allow-Origin"] == ORIGIN and h["Vary"] == "Origin"
    assert h["Access-Control-Expose-Headers"] == "Retry-After" and "Access-Control-Allow-Credentials" not in h


async def test_cors_allows_exactly_the_apps_origins(app, shop, client_factory):
    evil = await shop.browser("https://evil.example.net")
    answer = await evil.session()
    assert (answer.status, answer.code) == (403, "forbidden")
    assert "Access-Control-Allow-Origin" not in answer.headers and "token" not in str(answer.body)
    # the preflight carries no app id: it lets the browser ask, the answer decides
    c = await client_factory()
    async with c.http.request("OPTIONS", "/v1/widget/session",
                              headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                                       "Access-Control-Request-Headers": "content-type"}) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert resp.headers["Access-Control-Allow-Methods"] == "POST"
        assert resp.headers["Access-Control-Allow-Headers"] == "Content-Type"
        assert resp.headers["Access-Control-Max-Age"] == "600"
    # no other route answers CORS
    answer = await c.call("GET", "/v1/orgs", headers={"Origin": ORIGIN})
    assert "Access-Control-Allow-Origin" not in answer.headers
    # unknown app: 404 (readable by the page: it reveals nothing)
    ghost = await c.call("POST", "/v1/widget/session", {"app_id": "app_doesnotexist"}, headers={"Origin": ORIGIN})
    assert (ghost.status, ghost.code) == (404, "not_found")
    bad = await c.call("POST", "/v1/widget/session", {"app_id": "nope"}, headers={"Origin": ORIGIN})
    assert bad.code == "unprocessable_entity" and bad.body["error"]["details"]["field"] == "app_id"


async def test_same_browser_finds_its_conversations_and_another_does_not(app, shop):
    first = await shop.browser()
    s1 = (await first.session()).body
    engine = app[keys.ENGINE]
    ack = await engine.start_conversation(str(shop.org), s1["contact"]["id"], shop.app["id"], body="Where is my order?")
    await persist(app)
    again = (await first.session()).body
    assert again["contact"]["id"] == s1["contact"]["id"] and again["visitor_token"] == s1["visitor_token"]
    assert [c["id"] for c in again["conversations"]] == [ack.conversation_id]
    assert again["conversations"][0]["last_seq"] == 1 and again["conversations"][0]["status"] == "open"
    other = await shop.browser()
    theirs = (await other.session()).body
    assert theirs["contact"]["id"] != s1["contact"]["id"] and theirs["conversations"] == []
    # a stolen-looking or garbage token is just no token
    other.visitor_token = "vt_" + "x" * 43
    assert (await other.session()).body["contact"]["id"] not in (s1["contact"]["id"], theirs["contact"]["id"])
    other.visitor_token = "garbage"
    assert (await other.session()).status == 200


async def test_verified_identity_and_merge_of_the_anonymous_visitor(app, shop):
    # a known customer signs in on one device...
    laptop = await shop.browser()
    ident = {"external_id": "cust-42", "email": "ana@example.com", "name": "Ana",
             "user_hash": user_hash(shop.secret, "cust-42"), "custom_data": {"plan": "pro"}}
    known = (await laptop.session(ident)).body
    assert known["contact"]["verified"] is True and known["contact"]["email"] == "ana@example.com"
    # ...and writes anonymously from another device before signing in there
    phone = await shop.browser()
    anon = (await phone.session()).body
    ack = await app[keys.ENGINE].start_conversation(str(shop.org), anon["contact"]["id"], shop.app["id"],
                                                    body="question before login")
    await persist(app)
    merged = (await phone.session(ident)).body
    assert merged["contact"]["id"] == known["contact"]["id"]
    assert merged["visitor_token"] == anon["visitor_token"], "the browser keeps its token"
    assert [c["id"] for c in merged["conversations"]] == [ack.conversation_id]
    assert await contact_row(app, shop.org, anon["contact"]["id"]) is None, "the anonymous contact is gone"
    # the identified contact may now write into the merged conversation (live state moved too)
    more = await app[keys.ENGINE].send_message(str(shop.org), ack.conversation_id, type="incoming",
                                               author_kind="contact", author_id=known["contact"]["id"],
                                               body="now logged in", contact_id=known["contact"]["id"])
    assert more.seq == 2
    # the laptop sees it too
    assert [c["id"] for c in (await laptop.session(ident)).body["conversations"]] == [ack.conversation_id]


async def test_wrong_hash_is_not_verified_and_cannot_take_a_verified_contact(app, shop):
    owner_device = await shop.browser()
    ident = {"external_id": "vip-1", "email": "vip@example.com", "user_hash": user_hash(shop.secret, "vip-1"),
             "shop": "vip.myshopify.com", "shop_hash": user_hash(shop.secret, "vip.myshopify.com")}
    vip = (await owner_device.session(ident)).body
    row = await contact_row(app, shop.org, vip["contact"]["id"])
    assert row["verified"] and row["shop_verified"] and row["shop"] == "vip.myshopify.com"

    attacker = await shop.browser()
    forged = {**ident, "user_hash": user_hash("f" * 64, "vip-1"), "shop_hash": "0" * 64}
    got = (await attacker.session(forged)).body
    assert got["contact"]["id"] != vip["contact"]["id"] and got["contact"]["verified"] is False
    theirs = await contact_row(app, shop.org, got["contact"]["id"])
    assert not theirs["verified"] and not theirs["shop_verified"], "no merchant data without a valid shop_hash"
    assert theirs["external_id"] is None, "an unproven external_id is never stored"

    # the VIP's own browser, unverified this time: fills blanks only, never overwrites
    unverified = {"email": "changed@example.com", "name": "New Name", "phone": "555-0100"}
    again = (await owner_device.session(unverified)).body
    assert again["contact"]["id"] == vip["contact"]["id"]
    row = await contact_row(app, shop.org, vip["contact"]["id"])
    assert row["email"] == "vip@example.com", "a verified email is never overwritten by an unverified session"
    assert row["phone"] == "555-0100" and row["name"] == "New Name", "blank fields are filled"

    # a shop without shop_hash is never verified, even in a verified session
    shopless = await shop.browser()
    s = (await shopless.session({"external_id": "other", "user_hash": user_hash(shop.secret, "other"),
                                 "shop": "other.myshopify.com"})).body
    row = await contact_row(app, shop.org, s["contact"]["id"])
    assert row["verified"] and row["shop"] == "other.myshopify.com" and not row["shop_verified"]


async def test_require_verification_refuses_unverified_sessions(app, shop):
    await shop.owner.call("PATCH", f"/v1/orgs/{shop.org}/apps/{shop.app['id']}", {"require_verification": True})
    b = await shop.browser()
    for identify in (None, {"email": "x@example.com"}, {"external_id": "1", "user_hash": "0" * 64}):
        answer = await b.session(identify)
        assert (answer.status, answer.code) == (403, "identity_verification_required"), identify
        assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN, "the widget can read why"
    ok = await b.session({"external_id": "1", "user_hash": user_hash(shop.secret, "1")})
    assert ok.status == 200 and ok.body["contact"]["verified"]
    # the same browser refreshing with its token and identity: the same contact
    again = await b.session({"external_id": "1", "user_hash": user_hash(shop.secret, "1")})
    assert again.body["contact"]["id"] == ok.body["contact"]["id"]
    # after rotating the secret, old hashes no longer verify
    await shop.owner.reauth()
    await shop.owner.call("POST", f"/v1/orgs/{shop.org}/apps/{shop.app['id']}/identity-secret/rotate")
    stale = await b.session({"external_id": "1", "user_hash": user_hash(shop.secret, "1")})
    assert stale.code == "identity_verification_required"


async def test_bad_identify_fields_are_refused_naming_the_field(app, shop):
    b = await shop.browser()
    for identify, field in (({"email": "not-an-email"}, "identify.email"),
                            ({"custom_data": {"nested": {"x": 1}}}, "identify.custom_data.nested"),
                            ({"avatar_url": "javascript:alert(1)"}, "identify.avatar_url"),
                            ({"shop": "evil.example.com"}, "identify.shop"),
                            ({"unknown": 1}, "identify.unknown")):
        answer = await b.session(identify)
        assert answer.code == "unprocessable_entity" and answer.body["error"]["details"]["field"] == field, answer.body
    # custom_data merges, null clears (verified)
    ident = {"external_id": "cd", "user_hash": user_hash(shop.secret, "cd"), "custom_data": {"a": 1, "b": "x"}}
    s = (await b.session(ident)).body
    await b.session({**ident, "custom_data": {"a": None, "c": True}})
    row = await contact_row(app, shop.org, s["contact"]["id"])
    assert row["custom_data"] == {"b": "x", "c": True}


async def test_contact_webhook_events_are_enqueued(app, shop):
    hook = await shop.owner.call("POST", f"/v1/orgs/{shop.org}/webhooks",
                                 {"url": "https://hooks.example.com/w", "events": ["contact.created", "contact.identified"]})
    b = await shop.browser()
    anon = (await b.session()).body
    await b.session({"external_id": "ev-1", "user_hash": user_hash(shop.secret, "ev-1")})
    async with scoped(app[keys.DB], org_id=shop.org) as conn:
        rows = await conn.fetch("SELECT event, payload FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY created_at",
                                uuid.UUID(hook.body["webhook"]["id"]))
    assert [r["event"] for r in rows] == ["contact.created", "contact.identified"]
    assert rows[1]["payload"]["data"]["contact"]["external_id"] == "ev-1"
    assert rows[0]["payload"]["data"]["contact"]["id"] == anon["contact"]["id"]


async def test_team_and_live_state(app, shop, client_factory):
    agent, agent_id, _ = await signed_in(client_factory, app)
    await add_member(app, shop.org, agent_id, "agent")
    async with scoped(app[keys.DB], org_id=shop.org) as conn:
        await conn.execute("UPDATE members SET availability = 'online' WHERE user_id = $1", agent_id)
        await conn.execute("UPDATE users SET avatar_url = 'javascript:alert(1)' WHERE id = $1", agent_id)
    b = await shop.browser()
    s = (await b.session()).body
    # chose Online, but no inbox open: the team is away (as the presence frames would say), and
    # the agents are listed by join date (the owner first)
    assert s["team"]["online"] is False and s["team"]["agents"][0]["id"] == str(shop.owner_id)
    assert str(agent_id) in [a["id"] for a in s["team"]["agents"]]
    # an inbox socket of the agent, as a gateway records it
    await Presence(app[keys.CONFIG], app[keys.REDIS], app[keys.DB]).set_entries(
        str(shop.org), [(str(agent_id), "inbox-widget-test", 600_000, "c")])
    ack = await app[keys.ENGINE].start_conversation(str(shop.org), s["contact"]["id"], shop.app["id"], body="x")
    await persist(app)
    await app[keys.ENGINE].send_message(str(shop.org), ack.conversation_id, type="outgoing", author_kind="member",
                                        author_id=str(agent_id), body="y")   # not persisted yet
    body = (await b.session()).body
    assert body["team"]["online"] is True and body["team"]["agents"][0]["id"] == str(agent_id), \
        "the agent who is online (chose Online, inbox open) is listed first"
    assert body["team"]["agents"][0]["avatar_url"] is None, "only http(s) avatars"
    assert body["conversations"][0]["last_seq"] == 2, "the live sequence, ahead of PostgreSQL"
    shard = engine_keys.shard_of(str(shop.org), app[keys.CONFIG].engine.shards)
    assert await app[keys.REDIS].exists(engine_keys.meta(shard, ack.conversation_id))
    async with scoped(app[keys.DB], org_id=shop.org) as conn:
        await conn.execute("UPDATE members SET availability = 'busy' WHERE user_id = $1", agent_id)
    assert (await b.session()).body["team"]["online"] is False, "an open inbox alone is not Online"


async def test_sessions_are_throttled_per_ip(app, shop):
    b = await shop.browser()
    statuses = [(await b.session(keep=False)).status for _ in range(IP_LIMIT + 1)]
    assert statuses[:IP_LIMIT] == [200] * IP_LIMIT and statuses[-1] == 429
    limited = await b.session()
    assert limited.code == "rate_limited" and int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["Access-Control-Allow-Origin"] == ORIGIN, "the widget can read Retry-After"
    assert (await (await shop.browser()).session()).status == 200, "another IP is unaffected"
