"""Search over the real admin API and PostgreSQL: full-text over messages and contacts, filters,
pagination, private notes for the team only, and tenant isolation."""

import datetime as dt
import uuid

import pytest

from admin_api import keys
from admin_api.search import decode_cursor, encode_cursor, terms_of, tsquery
from admin_api.errors import ApiError
from convot.db import scoped
from tests.admin_api.conftest import add_member, make_org, signed_in
from tests.admin_api.developer import api_client

T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.timezone.utc)


async def seed_conversation(app, org_id, *, contact_name="Ana Lovelace", email=None, status="open", assignee=None,
                            tags=(), messages=(), contact_id=None, app_id=None):
    """A persisted conversation with ``messages``: (type, body, minutes after T0, deleted)."""
    async with scoped(app[keys.DB], org_id=org_id) as conn:
        if app_id is None:
            app_id = await conn.fetchval(
                "INSERT INTO apps (org_id, public_key, name, identity_secret_enc) VALUES ($1, $2, 'App', '\\x00') "
                "RETURNING id", org_id, f"app_{uuid.uuid4().hex[:20]}")
        if contact_id is None:
            contact_id = await conn.fetchval(
                "INSERT INTO contacts (org_id, name, email) VALUES ($1, $2, $3) RETURNING id",
                org_id, contact_name, email or f"{uuid.uuid4().hex[:8]}@shop.example")
        conv = await conn.fetchval(
            "INSERT INTO conversations (org_id, app_id, contact_id, status, assignee_id, last_seq, last_message_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            org_id, app_id, contact_id, status, assignee, len(messages),
            T0 + dt.timedelta(minutes=max([m[2] for m in messages], default=0)))
        for seq, (type_, body, minutes, deleted) in enumerate(messages, start=1):
            author = {"incoming": "contact", "note": "member", "outgoing": "member", "activity": "system"}[type_]
            await conn.execute(
                "INSERT INTO messages (org_id, conversation_id, seq, id, type, author_kind, body, created_at, deleted_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                org_id, conv, seq, uuid.uuid4().hex, type_, author, "" if deleted else body,
                T0 + dt.timedelta(minutes=minutes), T0 if deleted else None)
        for tag in tags:
            tag_id = await conn.fetchval(
                "INSERT INTO tags (org_id, name) VALUES ($1, $2) ON CONFLICT (org_id, name) DO UPDATE SET name = $2 "
                "RETURNING id", org_id, tag)
            await conn.execute("INSERT INTO conversation_tags VALUES ($1, $2, $3)", org_id, conv, tag_id)
    return str(conv), str(contact_id), str(app_id)


@pytest.fixture
async def world(client_factory, app):
    owner, owner_id, _ = await signed_in(client_factory, app)
    org_a = await make_org(app, owner_id, "A")
    agent, agent_id, _ = await signed_in(client_factory, app)
    await add_member(app, org_a, agent_id, "agent")
    ana_conv, ana, app_a = await seed_conversation(app, org_a, messages=[
        ("incoming", "Hello, I need a REFUND for order 1001", 1, False),
        ("note", "Private: refund approved by finance, big spender", 2, False),
        ("outgoing", "Your refund is on its way!", 3, False),
        ("incoming", "refund secret I regret sending", 4, True),
        ("activity", "Conversation reopened", 5, False)])
    parcel_conv, _, _ = await seed_conversation(app, org_a, contact_name="Bob Parcel", status="resolved",
                                                assignee=agent_id, tags=("shipping",), app_id=app_a, messages=[
                                                    ("incoming", "Where is my parcel?", 10, False),
                                                    ("outgoing", "Shipped today, tracking inside", 11, False)])
    b_owner, b_owner_id, _ = await signed_in(client_factory, app)
    org_b = await make_org(app, b_owner_id, "B")
    b_conv, b_contact, _ = await seed_conversation(app, org_b, contact_name="Carla Refund", messages=[
        ("incoming", "refund please, organisation B here", 20, False)])
    return {"owner": owner, "agent": agent, "agent_id": str(agent_id), "org_a": str(org_a), "ana_conv": ana_conv,
            "ana": ana, "app_a": app_a, "parcel_conv": parcel_conv, "b_owner": b_owner, "org_b": str(org_b),
            "b_conv": b_conv, "b_contact": b_contact}


def bodies(answer):
    return [(h["matched"], h["conversation"]["id"], h["message"]["type"] if h["message"] else None)
            for h in answer.body["items"]]


def test_query_words_become_prefix_terms():
    assert terms_of("  Refund, ORDER #1001 refund ") == ["refund", "order", "1001"]
    assert tsquery(["refund", "order"]) == "refund:* & order:*"
    assert terms_of("!!! ...") == [] and terms_of("_") == []
    assert len(terms_of(" ".join(f"w{i}" for i in range(30)))) == 12
    at, conv = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), uuid.uuid4()
    assert decode_cursor(encode_cursor(at, conv, 7)) == (at, conv, 7)
    for bad in ("nope", encode_cursor(at, conv, 1)[:-3], "W10"):
        with pytest.raises(ApiError):
            decode_cursor(bad)


async def test_team_search_finds_message_words_in_its_organisation_only(world):
    a = world["agent"]
    answer = await a.call("GET", f"/v1/orgs/{world['org_a']}/search?q=refund")
    assert answer.status == 200, answer.body
    # newest first; the note is included for the team; the deleted message is not; B never appears
    assert bodies(answer) == [("message", world["ana_conv"], "outgoing"), ("message", world["ana_conv"], "note"),
                              ("message", world["ana_conv"], "incoming")]
    assert answer.body["terms"] == ["refund"] and answer.body["next_cursor"] is None
    text = str(answer.body)
    assert world["b_conv"] not in text and "organisation B" not in text and "regret" not in text
    hit = answer.body["items"][2]
    assert hit["message"]["snippet"].startswith("Hello, I need a REFUND") and hit["message"]["seq"] == 1
    assert hit["conversation"]["contact_id"] == world["ana"] and hit["conversation"]["status"] == "open"
    # B searching its own organisation never sees A's messages
    b = await world["b_owner"].call("GET", f"/v1/orgs/{world['org_b']}/search?q=refund")
    assert [(h["matched"], h["conversation"]["id"]) for h in b.body["items"]] == [
        ("message", world["b_conv"]), ("contact", world["b_conv"])]      # B's contact is "Carla Refund"
    # ... nor can it search A's
    assert (await world["b_owner"].call("GET", f"/v1/orgs/{world['org_a']}/search?q=refund")).status == 404


async def test_words_match_by_prefix_case_insensitively_and_all_must_occur(world):
    a, org = world["agent"], world["org_a"]
    assert len((await a.call("GET", f"/v1/orgs/{org}/search?q=REFU")).body["items"]) == 3
    both = await a.call("GET", f"/v1/orgs/{org}/search?q=refund%20order")
    assert bodies(both) == [("message", world["ana_conv"], "incoming")]
    assert (await a.call("GET", f"/v1/orgs/{org}/search?q=refund%20parcel")).body["items"] == []
    bad = await a.call("GET", f"/v1/orgs/{org}/search?q=%21%21%21")
    assert (bad.status, bad.code, bad.body["error"]["details"]["field"]) == (422, "unprocessable_entity", "q")


async def test_contacts_are_found_by_name_and_email(world):
    a, org = world["agent"], world["org_a"]
    answer = await a.call("GET", f"/v1/orgs/{org}/search?q=lovelace")
    assert bodies(answer) == [("contact", world["ana_conv"], None)]


async def test_filters_by_status_assignee_tag_and_app(world):
    a, org = world["agent"], world["org_a"]

    async def convs(query):
        answer = await a.call("GET", f"/v1/orgs/{org}/search?{query}")
        assert answer.status == 200, answer.body
        return {h["conversation"]["id"] for h in answer.body["items"]}

    parcel, ana = world["parcel_conv"], world["ana_conv"]
    assert await convs("q=parcel") == {parcel}
    assert await convs("q=parcel&status=resolved") == {parcel}
    assert await convs("q=parcel&status=open") == set()
    assert await convs(f"q=parcel&assignee_id={world['agent_id']}") == {parcel}
    assert await convs("q=parcel&assignee_id=none") == set()
    assert await convs("q=refund&assignee_id=none") == {ana}
    assert await convs("q=parcel&tag=Shipping") == {parcel}
    assert await convs("q=refund&tag=shipping") == set()
    assert await convs(f"q=refund&app_id={world['app_a']}") == {ana}
    assert await convs(f"q=refund&app_id={uuid.uuid4()}") == set()
    bad = await a.call("GET", f"/v1/orgs/{org}/search?q=x&assignee_id=someone")
    assert bad.status == 422


async def test_pages_walk_every_hit_once(world):
    a, org = world["agent"], world["org_a"]
    seen, cursor = [], None
    for _ in range(5):
        answer = await a.call("GET", f"/v1/orgs/{org}/search?q=refund&limit=1" + (f"&cursor={cursor}" if cursor else ""))
        seen += [h["message"]["seq"] for h in answer.body["items"]]
        cursor = answer.body["next_cursor"]
        if cursor is None:
            break
    assert seen == [3, 2, 1]
    bad = await a.call("GET", f"/v1/orgs/{org}/search?q=refund&cursor=garbage")
    assert (bad.status, bad.body["error"]["details"]["field"]) == (422, "cursor")


async def test_shopper_facing_search_never_returns_private_notes(world):
    a, org = world["agent"], world["org_a"]
    answer = await a.call("GET", f"/v1/orgs/{org}/contacts/{world['ana']}/search?q=refund")
    assert answer.status == 200, answer.body
    assert [h["message"]["type"] for h in answer.body["items"]] == ["outgoing", "incoming"]
    text = str(answer.body)
    assert "finance" not in text and "big spender" not in text and "regret" not in text
    assert set(answer.body["items"][0]["conversation"]) == {"id", "status"}      # no assignee, no tags
    # activity messages are the contact's to see; notes never, even when only notes match
    assert len((await a.call("GET", f"/v1/orgs/{org}/contacts/{world['ana']}/search?q=reopened")).body["items"]) == 1
    assert (await a.call("GET", f"/v1/orgs/{org}/contacts/{world['ana']}/search?q=finance")).body["items"] == []
    # only the contact's own conversations; another organisation's contact is not found
    bob = await a.call("GET", f"/v1/orgs/{org}/search?q=bob")
    bob_contact = bob.body["items"][0]["conversation"]["contact_id"]
    assert (await a.call("GET", f"/v1/orgs/{org}/contacts/{bob_contact}/search?q=refund")).body["items"] == []
    assert (await a.call("GET", f"/v1/orgs/{org}/contacts/{world['b_contact']}/search?q=refund")).status == 404


async def test_team_search_carries_the_members_own_read_position(world, client_factory, app):
    org, ana, parcel = world["org_a"], world["ana_conv"], world["parcel_conv"]
    async with app[keys.DB].acquire() as conn:          # as the gateway stores a member's `read`
        assert await conn.fetchval("SELECT convot_store_read_positions($1::jsonb)", [
            {"org": org, "member": world["agent_id"], "conversation": ana, "seq": 2}]) == []

    async def read_seqs(who, q):
        answer = await who.call("GET", f"/v1/orgs/{org}/search?q={q}")
        assert answer.status == 200, answer.body
        return [(h["conversation"]["id"], h["conversation"].get("read_seq", "absent")) for h in answer.body["items"]]

    # every hit of the conversation carries the member's own position; none yet is null
    assert await read_seqs(world["agent"], "refund") == [(ana, 2)] * 3
    assert set(await read_seqs(world["agent"], "parcel")) == {(parcel, None)}
    # another member of the organisation has their own (none)
    assert await read_seqs(world["owner"], "refund") == [(ana, None)] * 3
    # an API key has no read position: no field, as in the conversation list
    api = await api_client(client_factory, world["owner"], org, scopes=["messages:read"])
    assert await read_seqs(api, "refund") == [(ana, "absent")] * 3
    # the shopper-facing search never carries it
    contact_view = await world["agent"].call("GET", f"/v1/orgs/{org}/contacts/{world['ana']}/search?q=refund")
    assert all(set(h["conversation"]) == {"id", "status"} for h in contact_view.body["items"])
