"""The gateway end to end on one process: real sockets, Redis and PostgreSQL."""

import asyncio
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from convot.tokens import TokenIssuer
from engine.client import EngineClient
from gateway.errors import RECONNECT_RANGE, TERMINAL_RANGE
from tests.engine.seed import seed_tenant


async def test_shopper_and_agent_chat(gw, tenant):
    agent = await gw.member(tenant, tenant.agents[0])
    shopper = await gw.shopper(tenant)
    await shopper.send(type="send", client_msg_id="s1", body="Hello, I need help", ref=7)
    ack = await shopper.expect("ack")
    assert ack["ref"] == 7 and ack["seq"] == 1 and ack["client_msg_id"] == "s1" and not ack["duplicate"]
    conv = ack["conversation_id"]
    created = await agent.expect("conversation.update")
    assert created["changes"] == ["created"] and created["conversation"]["id"] == conv
    msg = await agent.expect("message")
    assert msg["message"]["body"] == "Hello, I need help" and msg["message"]["type"] == "incoming"
    echo = await shopper.expect("message")
    assert echo["message"]["id"] == ack["id"]
    await agent.send(type="send", conversation_id=conv, client_msg_id="a1", body="Hi! How can I help?")
    assert (await agent.expect("ack"))["seq"] == 2
    reply = await shopper.expect("message")
    assert reply["message"]["type"] == "outgoing" and reply["message"]["author_id"] == tenant.agents[0]
    # Retry of the same send: the original ack, no second message.
    await agent.send(type="send", conversation_id=conv, client_msg_id="a1", body="Hi! How can I help?")
    dup = await agent.expect("ack")
    assert dup["duplicate"] and dup["seq"] == 2
    assert [f for f in await shopper.quiet() if f["type"] == "message"] == []


async def test_a_shoppers_coming_and_going_reaches_the_members_only(gw, tenant):
    agent = await gw.member(tenant, tenant.agents[0])
    other = await gw.shopper(tenant, 1)
    shopper = await gw.shopper(tenant, 0)
    contact = {"kind": "contact", "id": tenant.contacts[0]}
    assert (await agent.expect("presence", subject=contact))["state"] == "online"
    await shopper.close()
    assert (await agent.expect("presence", subject=contact))["state"] == "offline"
    assert not [f for f in await other.quiet() if f["type"] == "presence"]      # never to other shoppers


async def test_notes_never_reach_a_shopper(gw, tenant):
    agent = await gw.member(tenant, tenant.agents[0])
    other_agent = await gw.member(tenant, tenant.agents[1])
    shopper = await gw.shopper(tenant)
    await shopper.send(type="send", client_msg_id="s1", body="hi")
    conv = (await shopper.expect("ack"))["conversation_id"]
    await agent.send(type="send", conversation_id=conv, client_msg_id="n1", body="private: big spender", kind="note")
    await agent.expect("ack")
    note = await other_agent.expect("message", timeout=5)
    while note["message"]["type"] != "note":
        note = await other_agent.expect("message")
    await agent.send(type="typing", conversation_id=conv, active=True, note=True)
    await agent.send(type="send", conversation_id=conv, client_msg_id="r1", body="public reply")
    await agent.expect("ack")
    await shopper.expect("message", timeout=5)   # own echo (seq 1)
    public = await shopper.expect("message")
    assert public["message"]["body"] == "public reply"
    assert all("big spender" not in str(f) for f in shopper.frames + await shopper.quiet())
    # ... nor through resume or history.
    await shopper.send(type="history", conversation_id=conv, ref="h")
    history = await shopper.expect("history")
    assert [m["type"] for m in history["messages"]] == ["incoming", "outgoing"]
    await shopper.send(type="send", conversation_id=conv, client_msg_id="s2", body="x", kind="note")
    assert (await shopper.expect("error"))["code"] == "forbidden"


def _signing_key(config):
    path = config.auth.jwt_private_keys.split("=", 1)[1]
    return serialization.load_pem_private_key(open(path, "rb").read(), None), config.auth.jwt_private_keys.split("=")[0]


def _claims(config, tenant, **over):
    now = int(time.time())
    c = {"iss": config.auth.issuer, "aud": config.auth.audience, "iat": now, "nbf": now, "exp": now + 300,
         "jti": uuid.uuid4().hex, "sub": tenant.agents[0], "org": tenant.org, "role": "agent", "ver": 0}
    c.update(over)
    return c


@pytest.mark.parametrize("case", ["forged", "expired", "audience", "alg_none", "unknown_kid", "garbage",
                                  "wrong_org_member", "wrong_org_contact", "stale_version"])
async def test_bad_tokens_get_a_terminal_close(gw, tenant, owner_db, case):
    key, kid = _signing_key(gw.config)
    other = await seed_tenant(owner_db, contacts=1)
    if case == "forged":
        token = jwt.encode(_claims(gw.config, tenant), Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": kid})
    elif case == "expired":
        token = jwt.encode(_claims(gw.config, tenant, exp=int(time.time()) - 60, iat=int(time.time()) - 400,
                                   nbf=int(time.time()) - 400), key, algorithm="EdDSA", headers={"kid": kid})
    elif case == "audience":
        token = jwt.encode(_claims(gw.config, tenant, aud="admin-api"), key, algorithm="EdDSA", headers={"kid": kid})
    elif case == "alg_none":
        token = jwt.encode(_claims(gw.config, tenant), None, algorithm="none", headers={"kid": kid})
    elif case == "unknown_kid":
        token = jwt.encode(_claims(gw.config, tenant), key, algorithm="EdDSA", headers={"kid": "nope"})
    elif case == "garbage":
        token = "not.a.token"
    elif case == "wrong_org_member":       # validly signed, but the user is not a member there
        token, _ = gw.issuer.member_token(other.org, tenant.agents[0], "agent", 0)
    elif case == "wrong_org_contact":      # a contact of another organisation
        token, _ = gw.issuer.widget_token(other.org, tenant.contacts[0], other.app)
    else:                                  # role/version changed since the token was issued
        token, _ = gw.issuer.member_token(tenant.org, tenant.agents[0], "agent", 3)
    client = await gw.raw()
    await client.send(type="authenticate", token=token)
    code = await client.closed()
    assert code == 4401 and code in TERMINAL_RANGE
    # The gateway is fine: a good token still works.
    ok = await gw.member(tenant, tenant.agents[1])
    await ok.send(type="ping", ref=1)
    assert (await ok.expect("pong"))["ref"] == 1


async def test_first_frame_must_authenticate(gw, tenant):
    c = await gw.raw()
    await c.send(type="send", client_msg_id="x", body="early")
    assert await c.closed() == 4400
    c = await gw.raw()
    await c.ws.send("{not json")
    assert await c.closed() == 4400


async def test_shopper_cannot_touch_another_conversation(gw, tenant):
    alice = await gw.shopper(tenant, 0)
    bob = await gw.shopper(tenant, 1)
    await alice.send(type="send", client_msg_id="a1", body="private to alice")
    conv = (await alice.expect("ack"))["conversation_id"]
    for frame in ({"type": "history", "conversation_id": conv},
                  {"type": "send", "conversation_id": conv, "client_msg_id": "b1", "body": "intrude"},
                  {"type": "typing", "conversation_id": conv},
                  {"type": "read", "conversation_id": conv, "seq": 1},
                  {"type": "resume", "conversations": {conv: 0}},
                  {"type": "conversation.update", "conversation_id": conv, "status": "resolved"},
                  {"type": "message.delete", "conversation_id": conv, "seq": 1}):
        await bob.send(ref="r", **frame)
        reply = await bob.expect("resumed" if frame["type"] == "resume" else "error")
        if frame["type"] == "resume":
            assert reply["not_found"] == [conv] and reply["conversations"] == {}
        else:
            assert reply["code"] in ("not_found", "forbidden") and reply["ref"] == "r"
    assert all("private to alice" not in str(f) for f in bob.frames + await bob.quiet())


async def test_agent_cannot_reach_another_organisation(gw, tenant, owner_db):
    other = await seed_tenant(owner_db)
    outsider = await gw.member(other, other.agents[0])
    shopper = await gw.shopper(tenant)
    await shopper.send(type="send", client_msg_id="s1", body="tenant secret")
    conv = (await shopper.expect("ack"))["conversation_id"]
    await outsider.send(type="history", conversation_id=conv)
    assert (await outsider.expect("error"))["code"] == "not_found"
    await outsider.send(type="send", conversation_id=conv, client_msg_id="o1", body="x")
    assert (await outsider.expect("error"))["code"] == "not_found"
    assert all("tenant secret" not in str(f) for f in outsider.frames + await outsider.quiet())


async def test_bad_input_gets_error_codes_and_others_are_untouched(gw, tenant):
    agent = await gw.member(tenant, tenant.agents[0])
    shopper = await gw.shopper(tenant)
    await shopper.send(type="send", client_msg_id="s1", body="hi")
    conv = (await shopper.expect("ack"))["conversation_id"]
    await agent.ws.send("{nope")
    assert (await agent.expect("error"))["code"] == "bad_json"
    await agent.ws.send("[1, 2]")
    assert (await agent.expect("error"))["code"] == "bad_json"
    await agent.send(type="teleport", ref="t")
    err = await agent.expect("error")
    assert err["code"] == "unknown_type" and err["ref"] == "t"
    await agent.send(type="send", conversation_id="nope", client_msg_id="x", body="y", ref=3)
    err = await agent.expect("error")
    assert err["code"] == "bad_frame" and err["ref"] == 3
    await agent.send(type="send", conversation_id=conv, client_msg_id="x", body="y" * 9000)
    assert (await agent.expect("error"))["code"] == "message_too_long"
    await agent.send(type="authenticate", token="again")
    assert (await agent.expect("error"))["code"] == "already_authenticated"
    # Still a working socket, and the other socket saw none of it.
    await agent.send(type="send", conversation_id=conv, client_msg_id="ok1", body="still here")
    assert (await agent.expect("ack"))["seq"] == 2
    got = await shopper.expect("message", timeout=5)
    while got["message"]["seq"] != 2:
        got = await shopper.expect("message")
    assert not [f for f in shopper.frames if f["type"] == "error"]


async def test_oversize_frame_closes_with_1009(gw, tenant):
    agent = await gw.member(tenant, tenant.agents[0])
    bystander = await gw.member(tenant, tenant.agents[1])
    await agent.ws.send("x" * (gw.config.gateway.max_frame_bytes + 1))
    assert await agent.closed() == 1009
    await bystander.send(type="ping")
    assert (await bystander.expect("pong"))["type"] == "pong"


async def test_flood_is_rate_limited_then_closed(gw, tenant):
    agent = await gw.member(tenant, tenant.agents[0])
    bystander = await gw.member(tenant, tenant.agents[1])
    burst = gw.config.gateway.rate_limit_burst
    for i in range(burst * 3):
        await agent.send(type="ping", ref=i)
    code = await agent.closed()
    errors = [f for f in agent.frames if f["type"] == "error"]
    assert errors and all(e["code"] == "rate_limited" for e in errors)
    assert code == 4006 and code in RECONNECT_RANGE
    await bystander.send(type="ping", ref="b")
    assert (await bystander.expect("pong"))["ref"] == "b"


async def test_removed_member_is_closed_within_a_second_and_cannot_return(gw, tenant, config):
    token, _ = gw.issuer.member_token(tenant.org, tenant.agents[0], "agent", 0)
    agent, _ = await gw.connect(token)
    colleague = await gw.member(tenant, tenant.agents[1])
    engine = EngineClient(config)
    await engine.start()
    try:
        await engine.publish_control({"kind": "member_removed", "org": tenant.org, "user": tenant.agents[0]})
        assert await agent.closed(timeout=1.0) == 4403      # the requirement: closed within a second
    finally:
        await engine.close()
    again = await gw.raw()
    await again.send(type="authenticate", token=token)
    assert await again.closed() == 4401
    await colleague.send(type="ping")
    assert (await colleague.expect("pong"))["type"] == "pong"


async def test_role_change_and_token_revocation(gw, tenant, config):
    token, exp = gw.issuer.member_token(tenant.org, tenant.agents[0], "agent", 0)
    agent, ready = await gw.connect(token)
    second, _ = await gw.connect(gw.issuer.member_token(tenant.org, tenant.agents[1], "agent", 0)[0])
    engine = EngineClient(config)
    await engine.start()
    try:
        await engine.publish_control({"kind": "role_changed", "org": tenant.org, "user": tenant.agents[0], "version": 1})
        code = await agent.closed(timeout=1.0)
        assert code == 4007 and code in RECONNECT_RANGE
        jti = jwt.decode(_second_token := gw.issuer.member_token(tenant.org, tenant.agents[1], "agent", 0)[0],
                         options={"verify_signature": False})["jti"]
        third, _ = await gw.connect(_second_token)
        await engine.publish_control({"kind": "token_revoked", "jti": jti, "exp": int(time.time()) + 600})
        assert await third.closed(timeout=1.0) == 4402
        await second.send(type="ping")
        assert (await second.expect("pong"))["type"] == "pong"
    finally:
        await engine.close()


async def test_token_refresh_in_band(gw, tenant, owner_db):
    token, _ = gw.issuer.widget_token(tenant.org, tenant.contacts[0], tenant.app)
    shopper, ready = await gw.connect(token)
    fresh, exp = gw.issuer.widget_token(tenant.org, tenant.contacts[0], tenant.app)
    await shopper.send(type="token.refresh", token=fresh, ref="r1")
    refreshed = await shopper.expect("token.refreshed")
    assert refreshed["ref"] == "r1" and refreshed["expires_at"] == exp
    someone_else, _ = gw.issuer.widget_token(tenant.org, tenant.contacts[1], tenant.app)
    await shopper.send(type="token.refresh", token=someone_else, ref="r2")
    err = await shopper.expect("error")
    assert err["code"] == "token_mismatch" and err["ref"] == "r2"
    await shopper.send(type="token.refresh", token="garbage", ref="r3")
    assert (await shopper.expect("error"))["code"] == "token_mismatch"


async def test_expired_session_closes_with_token_expired(gw, tenant):
    ttl = gw.config.auth.widget_token_ttl
    issuer = TokenIssuer(gw.config, clock=lambda: time.time() - ttl + 1)   # expires in 1 s
    token, _ = issuer.widget_token(tenant.org, tenant.contacts[0], tenant.app)
    shopper, _ = await gw.connect(token)
    code = await shopper.closed(timeout=15)
    assert code == 4003 and code in RECONNECT_RANGE


async def test_resume_delivers_exactly_the_missed_messages(gw, tenant):
    agent = await gw.member(tenant, tenant.agents[0])
    shopper = await gw.shopper(tenant)
    await shopper.send(type="send", client_msg_id="s1", body="m1")
    conv = (await shopper.expect("ack"))["conversation_id"]
    await shopper.expect("message")
    await shopper.close()
    for i in range(2, 8):
        await agent.send(type="send", conversation_id=conv, client_msg_id=f"a{i}", body=f"m{i}")
        await agent.expect("ack")
    back = await gw.shopper(tenant)
    await back.send(type="resume", conversations={conv: 1}, ref="res")
    # Live traffic during the resume must neither duplicate nor overtake.
    await agent.send(type="send", conversation_id=conv, client_msg_id="a8", body="m8")
    resumed = await back.expect("resumed")
    assert resumed["conversations"][conv] >= 7 and resumed["ref"] == "res"
    frames = back.frames + await back.quiet(0.5)
    seqs = [f["message"]["seq"] for f in frames if f["type"] == "message"]
    assert seqs == list(range(2, 9))


async def test_slow_consumer_is_cut_and_others_keep_receiving(config, tenant):
    from tests.gateway.conftest import Harness, start_gateway, stop_gateway

    cfg = config.replace(gateway={"send_buffer_bytes": 65536, "rate_limit_per_second": 10000.0,
                                  "rate_limit_burst": 10000})
    task = await start_gateway(cfg)
    h = Harness(cfg, f"ws://127.0.0.1:{cfg.gateway.port}/", TokenIssuer(cfg))
    try:
        import socket

        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # a small window, like a stalled phone
        sock.connect(("127.0.0.1", cfg.gateway.port))
        token, _ = h.issuer.member_token(tenant.org, tenant.agents[0], "agent", 0)
        slow, _ = await h.connect(token, sock=sock)
        fast = await h.member(tenant, tenant.agents[1])
        sender = await h.shopper(tenant)
        slow.ws.transport.pause_reading()           # stops reading: its server buffer fills
        await sender.send(type="send", client_msg_id="s0", body="start")
        conv = (await sender.expect("ack"))["conversation_id"]
        body = "z" * 7000

        async def read_fast():
            got = 0
            while got < 401:
                frame = await fast.recv(10)
                got += frame["type"] == "message"
            return got

        reader = asyncio.get_running_loop().create_task(read_fast())
        for i in range(400):
            await sender.send(type="send", conversation_id=conv, client_msg_id=f"s{i + 1}", body=body)
            await sender.expect("ack")
            sender.frames.clear()
        assert await reader == 401, "the fast socket got everything while the slow one stalled"
        slow.ws.transport.resume_reading()
        assert await slow.closed(timeout=10) == 4001
    finally:
        for c in h.clients:
            await c.close()
        await stop_gateway(task)


async def test_drain_tells_clients_to_reconnect(config, tenant):
    from tests.gateway.conftest import Harness, start_gateway, stop_gateway

    task = await start_gateway(config)
    h = Harness(config, f"ws://127.0.0.1:{config.gateway.port}/", TokenIssuer(config))
    shopper = await h.shopper(tenant)
    await shopper.send(type="send", client_msg_id="d1", body="in flight")
    await stop_gateway(task)
    code = await shopper.closed()
    assert code == 4000 and code in RECONNECT_RANGE
    assert [f["type"] for f in shopper.frames if f["type"] == "ack"] == ["ack"]


async def test_large_resume_and_history_are_paced_not_cut(config, tenant, db):
    """A reply the client asked for may be larger than the slow-consumer bound."""
    from tests.gateway.conftest import Harness, start_gateway, stop_gateway

    cfg = config.replace(gateway={"send_buffer_bytes": 32768})
    engine = EngineClient(cfg, pool=db)
    await engine.start()
    task = await start_gateway(cfg)
    h = Harness(cfg, f"ws://127.0.0.1:{cfg.gateway.port}/", TokenIssuer(cfg))
    try:
        ack = await engine.start_conversation(tenant.org, tenant.contacts[0], tenant.app, body="start")
        conv = ack.conversation_id
        for i in range(60):
            await engine.send_message(tenant.org, conv, type="outgoing", author_kind="member",
                                      author_id=tenant.agents[0], body=f"{i:04d}" + "w" * 7000)
        shopper = await h.shopper(tenant)
        await shopper.send(type="resume", conversations={conv: 0}, ref="r")
        resumed = await shopper.expect("resumed", timeout=20)
        assert resumed["conversations"] == {conv: 61}
        seqs = [f["message"]["seq"] for f in shopper.frames if f["type"] == "message"]
        assert seqs == list(range(1, 62))
        await shopper.send(type="history", conversation_id=conv, limit=60, ref="h")
        history = await shopper.expect("history", timeout=20)
        assert [m["seq"] for m in history["messages"]] == list(range(2, 62))
    finally:
        await engine.close()
        for c in h.clients:
            await c.close()
        await stop_gateway(task)
