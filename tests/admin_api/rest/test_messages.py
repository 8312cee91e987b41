"""REST messages: sent through the engine (live on the agent's and the shopper's sockets),
idempotent by client_msg_id, history, deletion by the role rules."""

import uuid

import pytest

from tests.admin_api.conftest import add_member, remember, signed_in
from tests.admin_api.developer import api_client, create_app, owner_with_org
from tests.gateway.conftest import Harness, start_gateway, stop_gateway

ORIGIN = "https://shop.example.com"


@pytest.fixture
async def gateway(api_config):
    from convot.tokens import TokenIssuer

    task = await start_gateway(api_config)
    harness = Harness(api_config, f"ws://127.0.0.1:{api_config.gateway.port}/", TokenIssuer(api_config))
    yield harness
    for c in harness.clients:
        try:
            await c.close()
        except Exception:   # already closed by the server
            pass
    await stop_gateway(task)


async def test_a_message_sent_through_the_api_appears_live_on_agent_and_shopper_sockets(client_factory, app, gateway):
    owner, owner_id, org = await owner_with_org(client_factory, app)
    created, _ = await create_app(owner, org, allowed_origins=[ORIGIN])
    # the shopper: a widget session, then the gateway with its token
    browser = await client_factory()
    session = await browser.call("POST", "/v1/widget/session", {"app_id": created["public_key"]},
                                 headers={"Origin": ORIGIN})
    shopper, ready = await gateway.connect(session.body["token"])
    # the agent: an inbox socket token for a signed-in member
    agent_client, agent_id, _ = await signed_in(client_factory, app)
    await add_member(app, org, agent_id, "agent")
    socket_token = await agent_client.call("POST", f"/v1/orgs/{org}/socket-token")
    assert socket_token.status == 200 and socket_token.body["expires_at"] > 0
    agent, _ = await gateway.connect(socket_token.body["token"])

    await shopper.send(type="send", client_msg_id="s1", body="Is my order shipped?", ref=1)
    conv = (await shopper.expect("ack"))["conversation_id"]
    await agent.expect("message")
    await shopper.expect("message")

    api = await api_client(client_factory, owner, org, ["messages:write", "messages:read", "conversations:write",
                                                        "conversations:read"])
    remember("Yes, it left this morning.", "big spender", session.body["token"], socket_token.body["token"])
    sent = await api.call("POST", f"/v1/orgs/{org}/conversations/{conv}/messages",
                          {"body": "Yes, it left this morning.", "author_id": str(agent_id), "client_msg_id": "api-1"})
    assert sent.status == 201 and sent.body["seq"] == 2 and not sent.body["duplicate"]
    for socket in (agent, shopper):
        live = await socket.expect("message")
        assert live["message"]["body"] == "Yes, it left this morning." and live["message"]["seq"] == 2
        assert live["message"]["author_id"] == str(agent_id) and live["message"]["type"] == "outgoing"

    # a retry is the same message, not a second one
    retry = await api.call("POST", f"/v1/orgs/{org}/conversations/{conv}/messages",
                           {"body": "Yes, it left this morning.", "author_id": str(agent_id), "client_msg_id": "api-1"})
    assert retry.status == 201 and retry.body["duplicate"] and retry.body["id"] == sent.body["id"]

    # notes reach the agent, never the shopper
    await api.call("POST", f"/v1/orgs/{org}/conversations/{conv}/messages", {"body": "big spender", "type": "note"})
    note = await agent.expect("message")
    assert note["message"]["type"] == "note" and note["message"]["author_kind"] == "api"

    # status change and deletion are live too
    resolved = await api.call("PATCH", f"/v1/orgs/{org}/conversations/{conv}", {"status": "resolved"})
    assert resolved.body["status"] == "resolved"
    update = await shopper.expect("conversation.update", changes=["status"])
    assert update["conversation"]["status"] == "resolved"
    assert (await api.call("DELETE", f"/v1/orgs/{org}/conversations/{conv}/messages/2")).status == 204
    deleted = await shopper.expect("conversation.update", changes=["message_deleted"])
    assert deleted["message"]["seq"] == 2 and deleted["message"]["body"] == ""
    assert all("big spender" not in str(f) for f in shopper.frames + await shopper.quiet())


async def test_history_pages_backwards_and_deletion_follows_the_roles(client_factory, app):
    owner, owner_id, org = await owner_with_org(client_factory, app)
    contact = await owner.call("POST", f"/v1/orgs/{org}/contacts", {"email": f"h-{uuid.uuid4().hex[:6]}@example.com"})
    conv = (await owner.call("POST", f"/v1/orgs/{org}/conversations",
                             {"contact_id": contact.body["contact"]["id"]})).body["id"]
    agent, agent_id, _ = await signed_in(client_factory, app)
    await add_member(app, org, agent_id, "agent")
    base = f"/v1/orgs/{org}/conversations/{conv}/messages"
    for i in range(5):
        who = agent if i % 2 else owner
        assert (await who.call("POST", base, {"body": f"m{i}"})).status == 201
    page = await owner.call("GET", base + "?limit=2")
    assert [m["body"] for m in page.body["items"]] == ["m3", "m4"] and page.body["has_more"]
    older = await owner.call("GET", base + f"?limit=10&before_seq={page.body['next_before_seq']}")
    assert [m["body"] for m in older.body["items"]] == ["m0", "m1", "m2"] and not older.body["has_more"]
    assert older.body["items"][0]["author_id"] == str(owner_id) and older.body["items"][1]["author_id"] == str(agent_id)

    # an agent deletes their own reply, not the owner's; the owner deletes anything
    assert (await agent.call("DELETE", base + "/1")).code == "forbidden"
    assert (await agent.call("DELETE", base + "/2")).status == 204
    assert (await owner.call("DELETE", base + "/4")).status == 204
    assert (await owner.call("DELETE", base + "/4")).code == "not_found"
    assert (await owner.call("DELETE", base + "/99")).code == "not_found"
    items = (await owner.call("GET", base)).body["items"]
    assert [(m["seq"], m["deleted"], m["body"]) for m in items] == [
        (1, False, "m0"), (2, True, ""), (3, False, "m2"), (4, True, ""), (5, False, "m4")]
    # members send only as themselves
    other = await agent.call("POST", base, {"body": "as the boss", "author_id": str(owner_id)})
    assert other.code == "forbidden"


async def test_send_validation(client_factory, app):
    owner, _, org = await owner_with_org(client_factory, app)
    api = await api_client(client_factory, owner, org)
    contact = await api.call("POST", f"/v1/orgs/{org}/contacts", {"external_id": "v-1"})
    conv = (await api.call("POST", f"/v1/orgs/{org}/conversations", {"contact_id": contact.body["contact"]["id"]})).body
    base = f"/v1/orgs/{org}/conversations/{conv['id']}/messages"
    for body, field in (({"body": ""}, "body"), ({"body": "x", "type": "incoming"}, "type"),
                        ({"body": "x", "client_msg_id": "no spaces"}, "client_msg_id"),
                        ({"body": "x" * 8001}, "body"), ({"body": "x", "author_id": str(uuid.uuid4())}, "author_id")):
        answer = await api.call("POST", base, body)
        assert answer.code == "unprocessable_entity" and answer.body["error"]["details"]["field"] == field, answer.body
    missing = await api.call("POST", f"/v1/orgs/{org}/conversations/{uuid.uuid4()}/messages", {"body": "x"})
    assert missing.code == "not_found"
    assert (await api.call("GET", base)).body["items"] == []
