"""REST conversations: filters, cursor pagination, live state, updates through the engine."""

import uuid

from admin_api import keys
from tests.admin_api.conftest import add_member, signed_in
from tests.admin_api.developer import api_client, create_app, owner_with_org
from tests.admin_api.test_widget_session import persist


async def _conversation(api, org, email, app_id=None, body=None):
    contact = await api.call("POST", f"/v1/orgs/{org}/contacts", {"email": email})
    payload = {"contact_id": contact.body["contact"]["id"]}
    if app_id:
        payload["app_id"] = app_id
    if body:
        payload["message"] = {"body": body}
    answer = await api.call("POST", f"/v1/orgs/{org}/conversations", payload)
    assert answer.status == 201, answer.body
    return answer.body


async def test_list_filters_and_cursor(client_factory, app):
    owner, owner_id, org = await owner_with_org(client_factory, app)
    api = await api_client(client_factory, owner, org)
    created_app, _ = await create_app(owner, org)
    agent, agent_id, _ = await signed_in(client_factory, app)
    await add_member(app, org, agent_id, "agent")
    convs = [await _conversation(api, org, f"c{i}-{uuid.uuid4().hex[:6]}@example.com",
                                 app_id=created_app["id"] if i % 2 else None, body=f"hello {i}") for i in range(7)]
    ids = [c["id"] for c in convs]
    assert convs[0]["channel"] == "api" and convs[0]["last_seq"] == 1 and convs[0]["status"] == "open"
    await api.call("PATCH", f"/v1/orgs/{org}/conversations/{ids[0]}", {"status": "resolved", "add_tags": ["VIP Customer"]})
    await api.call("PATCH", f"/v1/orgs/{org}/conversations/{ids[1]}", {"assignee_id": str(agent_id)})
    await persist(app)

    base = f"/v1/orgs/{org}/conversations"
    seen, cursor = [], None
    while True:
        page = await api.call("GET", base + "?limit=3" + (f"&cursor={cursor}" if cursor else ""))
        assert page.status == 200 and len(page.body["items"]) <= 3
        seen += [c["id"] for c in page.body["items"]]
        cursor = page.body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids)), "newest first, every conversation exactly once"

    async def only(query):
        return [c["id"] for c in (await api.call("GET", base + "?" + query)).body["items"]]
    assert await only("status=resolved") == [ids[0]]
    assert await only("tag=vip-customer") == [ids[0]]
    assert await only(f"assignee_id={agent_id}") == [ids[1]]
    assert set(await only("assignee_id=none")) == set(ids) - {ids[1]}
    assert set(await only(f"app_id={created_app['id']}")) == {ids[1], ids[3], ids[5]}
    assert await only(f"contact_id={convs[2]['contact_id']}") == [ids[2]]
    for query, field in (("status=closed", "status"), ("cursor=@@@", "cursor"), ("limit=1000", "limit"),
                         ("assignee_id=bob", "assignee_id"), ("nope=1", "nope")):
        answer = await api.call("GET", base + "?" + query)
        assert answer.code == "unprocessable_entity" and answer.body["error"]["details"]["field"] == field, query


async def test_get_and_update_read_the_live_state(client_factory, app):
    owner, owner_id, org = await owner_with_org(client_factory, app)
    api = await api_client(client_factory, owner, org)
    conv = await _conversation(api, org, f"live-{uuid.uuid4().hex[:6]}@example.com")
    path = f"/v1/orgs/{org}/conversations/{conv['id']}"
    updated = await api.call("PATCH", path, {"status": "pending", "assignee_id": str(owner_id), "tags": ["b", "a"]})
    assert (updated.body["status"], updated.body["assignee_id"], updated.body["tags"]) == ("pending", str(owner_id),
                                                                                          ["a", "b"])
    got = await owner.call("GET", path)   # not persisted yet: the answer is the live state
    # ... plus, for a member, their own read position (none yet); an API key has no read_seq
    assert "read_seq" not in updated.body and got.body.pop("read_seq") is None
    assert got.body == updated.body
    cleared = await api.call("PATCH", path, {"assignee_id": None, "remove_tags": ["a"]})
    assert cleared.body["assignee_id"] is None and cleared.body["tags"] == ["b"]
    stranger, stranger_id, _ = await signed_in(client_factory, app)
    bad = await api.call("PATCH", path, {"assignee_id": str(stranger_id)})
    assert bad.code == "unprocessable_entity" and bad.body["error"]["details"]["field"] == "assignee_id"
    assert (await api.call("PATCH", path, {"tags": ["!!!"]})).body["error"]["details"]["field"] == "tags[0]"
    assert (await api.call("GET", f"/v1/orgs/{org}/conversations/{uuid.uuid4()}")).code == "not_found"
    # the engine writes every change to the stream; the workers persist the newest state
    await persist(app)
    listed = (await api.call("GET", f"/v1/orgs/{org}/conversations")).body["items"]
    assert listed[0]["status"] == "pending" and listed[0]["tags"] == ["b"]


async def test_starting_a_conversation_needs_a_contact_of_the_organisation(client_factory, app):
    owner, _, org = await owner_with_org(client_factory, app)
    other_owner, _, other_org = await owner_with_org(client_factory, app)
    theirs = await other_owner.call("POST", f"/v1/orgs/{other_org}/contacts", {"email": "theirs@example.com"})
    answer = await owner.call("POST", f"/v1/orgs/{org}/conversations", {"contact_id": theirs.body["contact"]["id"]})
    assert answer.code == "unprocessable_entity" and answer.body["error"]["details"]["field"] == "contact_id"


async def test_each_member_reads_their_own_read_seq(client_factory, app):
    owner, owner_id, org = await owner_with_org(client_factory, app)
    api = await api_client(client_factory, owner, org)
    agent, agent_id, _ = await signed_in(client_factory, app)
    await add_member(app, org, agent_id, "agent")
    outsider_owner, outsider_id, other_org = await owner_with_org(client_factory, app)
    convs = [await _conversation(api, org, f"r{i}-{uuid.uuid4().hex[:6]}@example.com", body=f"hello {i}")
             for i in range(3)]
    ids = [c["id"] for c in convs]
    await persist(app)
    # What the gateway stores from `read` frames (tests/gateway/test_read_positions.py).
    async with app[keys.DB].acquire() as conn:
        await conn.fetchval("SELECT convot_store_read_positions($1::jsonb)", [
            {"org": str(org), "member": str(owner_id), "conversation": ids[0], "seq": 1},
            {"org": str(org), "member": str(agent_id), "conversation": ids[1], "seq": 1}])

    async def listed(who):
        answer = await who.call("GET", f"/v1/orgs/{org}/conversations")
        assert answer.status == 200, answer.body
        return {c["id"]: c.get("read_seq", "absent") for c in answer.body["items"]}

    assert await listed(owner) == {ids[0]: 1, ids[1]: None, ids[2]: None}
    assert await listed(agent) == {ids[0]: None, ids[1]: 1, ids[2]: None}
    assert await listed(api) == {i: "absent" for i in ids}
    for who, expected in ((owner, [1, None]), (agent, [None, 1])):
        got = [(await who.call("GET", f"/v1/orgs/{org}/conversations/{i}")).body["read_seq"] for i in ids[:2]]
        assert got == expected
    assert "read_seq" not in (await api.call("GET", f"/v1/orgs/{org}/conversations/{ids[0]}")).body
    # Another organisation's member reaches none of it.
    assert (await outsider_owner.call("GET", f"/v1/orgs/{org}/conversations")).code == "not_found"
    assert (await outsider_owner.call("GET", f"/v1/orgs/{other_org}/conversations")).body["items"] == []
