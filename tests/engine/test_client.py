"""EngineClient against real Redis and PostgreSQL: sequencing, idempotency, authorisation,
conversation state, resume and history."""

import asyncio
import uuid

import orjson
import pytest

from engine import keys
from engine.client import KEEP, EngineClient
from engine.errors import EngineError
from engine.worker import Worker
from tests.engine.seed import seed_tenant


@pytest.fixture
async def engine(config, db):
    client = EngineClient(config, pool=db)
    await client.start()
    yield client
    await client.close()


@pytest.fixture
async def tenant(owner_db):
    return await seed_tenant(owner_db)


async def _stream_entries(redis_client, config, org, conv):
    stream = keys.stream(keys.shard_of(org, config.engine.shards))
    out = []
    for _id, f in await redis_client.xrange(stream):
        if f[b"c"].decode() == conv:
            out.append((f[b"t"], orjson.loads(f[b"f"])))
    return out


async def test_start_and_sequence(engine, tenant, redis_client, config):
    contact = tenant.contacts[0]
    ack = await engine.start_conversation(tenant.org, contact, tenant.app, body="hello", client_msg_id="c-1")
    assert ack.seq == 1 and not ack.duplicate and ack.client_msg_id == "c-1"
    conv = ack.conversation_id
    acks = await asyncio.gather(*[
        engine.send_message(tenant.org, conv, type="outgoing", author_kind="member", author_id=tenant.agents[0],
                            body=f"m{i}") for i in range(20)])
    assert sorted(a.seq for a in acks) == list(range(2, 22))
    entries = await _stream_entries(redis_client, config, tenant.org, conv)
    kinds = [t for t, _ in entries]
    assert kinds[0] == b"u" and entries[0][1]["changes"] == ["created"]
    seqs = [f["message"]["seq"] for t, f in entries if t == b"m"]
    assert seqs == list(range(1, 22)), "stream order is sequence order"
    # Same bytes in the stream as in the recent list (encoded once).
    frames, last, complete = await engine.missed(tenant.org, conv, 0)
    assert last == 21 and complete and [orjson.loads(f)["message"]["seq"] for f in frames] == list(range(1, 22))


async def test_retry_with_same_client_msg_id_returns_original_ack(engine, tenant, redis_client, config):
    contact = tenant.contacts[0]
    first = await engine.start_conversation(tenant.org, contact, tenant.app, body="hi", client_msg_id="new-1")
    again = await engine.start_conversation(tenant.org, contact, tenant.app, body="hi", client_msg_id="new-1")
    assert again.duplicate and (again.conversation_id, again.id, again.seq) == (first.conversation_id, first.id, 1)
    conv = first.conversation_id
    a = await engine.send_message(tenant.org, conv, type="incoming", author_kind="contact", author_id=contact,
                                  body="x", client_msg_id="m-2", contact_id=contact)
    concurrent = await asyncio.gather(*[
        engine.send_message(tenant.org, conv, type="incoming", author_kind="contact", author_id=contact,
                            body="x", client_msg_id="m-2", contact_id=contact) for _ in range(5)])
    assert all(c.duplicate and c.id == a.id and c.seq == a.seq for c in concurrent)
    entries = await _stream_entries(redis_client, config, tenant.org, conv)
    assert [f["message"]["seq"] for t, f in entries if t == b"m"] == [1, 2]


async def test_shopper_cannot_reach_another_contacts_conversation(engine, tenant, owner_db):
    a, b = tenant.contacts[0], tenant.contacts[1]
    conv = (await engine.start_conversation(tenant.org, a, tenant.app, body="mine")).conversation_id
    with pytest.raises(EngineError) as err:
        await engine.send_message(tenant.org, conv, type="incoming", author_kind="contact", author_id=b,
                                  body="sneaky", contact_id=b)
    assert err.value.code == "not_found"
    with pytest.raises(EngineError) as err:
        await engine.missed(tenant.org, conv, 0, contact_id=b)
    assert err.value.code == "not_found"
    other = await seed_tenant(owner_db)
    with pytest.raises(EngineError) as err:
        await engine.send_message(other.org, conv, type="outgoing", author_kind="member", author_id=other.agents[0],
                                  body="cross-tenant")
    assert err.value.code == "not_found"
    assert await engine.conversation(other.org, conv) is None
    with pytest.raises(EngineError) as err:
        await engine.send_message(tenant.org, str(uuid.uuid4()), type="outgoing", author_kind="member",
                                  author_id=tenant.agents[0], body="nowhere")
    assert err.value.code == "not_found"


@pytest.mark.parametrize("bad", [
    {"body": ""}, {"body": "   "}, {"body": "x" * 9000}, {"type": "shout"}, {"author_kind": "robot"},
    {"client_msg_id": "has space"}, {"client_msg_id": "x" * 65}, {"meta": {"k": "v" * 5000}}, {"meta": [1]},
])
async def test_invalid_messages_are_refused(engine, tenant, bad):
    conv = (await engine.start_conversation(tenant.org, tenant.contacts[0], tenant.app, body="hi")).conversation_id
    fields = dict(type="outgoing", author_kind="member", author_id=tenant.agents[0], body="ok")
    fields.update(bad)
    with pytest.raises(EngineError) as err:
        await engine.send_message(tenant.org, conv, **fields)
    assert err.value.code == "invalid"


async def test_shopper_message_reopens_but_activity_does_not(engine, tenant, redis_client, config):
    contact = tenant.contacts[0]
    conv = (await engine.start_conversation(tenant.org, contact, tenant.app, body="hi")).conversation_id
    for status in ("resolved", "pending"):
        assert await engine.update_conversation(tenant.org, conv, status=status, actor=("member", tenant.agents[0]))
        await engine.send_message(tenant.org, conv, type="activity", author_kind="system", author_id=None, body="note")
        await engine.send_message(tenant.org, conv, type="outgoing", author_kind="member",
                                  author_id=tenant.agents[0], body="reply")
        assert (await engine.conversation(tenant.org, conv)).status == status
        await engine.send_message(tenant.org, conv, type="incoming", author_kind="contact", author_id=contact,
                                  body="back again", contact_id=contact)
        assert (await engine.conversation(tenant.org, conv)).status == "open"
    updates = [f for t, f in await _stream_entries(redis_client, config, tenant.org, conv) if t == b"u"]
    assert [(u["changes"], u["conversation"]["status"]) for u in updates] == [
        (["created"], "open"), (["status"], "resolved"), (["status"], "open"),
        (["status"], "pending"), (["status"], "open")]
    assert updates[2]["actor"] == {"kind": "contact", "id": contact}


async def test_update_assignment_and_tags(engine, tenant, redis_client, config):
    conv = (await engine.start_conversation(tenant.org, tenant.contacts[0], tenant.app, body="hi")).conversation_id
    actor = ("member", tenant.admins[0])
    assert await engine.update_conversation(tenant.org, conv, assignee_id=tenant.agents[0], add_tags=["VIP", "Refund Request"], actor=actor)
    c = await engine.conversation(tenant.org, conv)
    assert c.assignee_id == tenant.agents[0] and c.tags == ("refund-request", "vip")
    assert not await engine.update_conversation(tenant.org, conv, assignee_id=tenant.agents[0], actor=actor)
    assert await engine.update_conversation(tenant.org, conv, remove_tags=["vip"], assignee_id=None, actor=actor)
    c = await engine.conversation(tenant.org, conv)
    assert c.assignee_id == "" and c.tags == ("refund-request",)
    with pytest.raises(EngineError):
        await engine.update_conversation(tenant.org, conv, status="closed", actor=actor)
    with pytest.raises(EngineError):
        await engine.update_conversation(tenant.org, conv, add_tags=["!!!"], actor=actor)
    last = [f for t, f in await _stream_entries(redis_client, config, tenant.org, conv) if t == b"u"][-1]
    assert set(last["changes"]) == {"assignment", "tags"} and last["conversation"]["tags"] == ["refund-request"]
    assert last["actor"] == {"kind": "member", "id": tenant.admins[0]}


async def test_only_if_unassigned_sets_an_empty_assignee_and_keeps_a_present_one(engine, tenant, redis_client, config):
    first, second = tenant.agents[0], tenant.agents[1]
    actor = ("system", "auto_assign")
    conv = (await engine.start_conversation(tenant.org, tenant.contacts[0], tenant.app, body="hi")).conversation_id
    result = await engine.update_conversation(tenant.org, conv, assignee_id=first, actor=actor,
                                              only_if_unassigned=True)
    assert result and result.changed and not result.assignee_kept
    assert (await engine.conversation(tenant.org, conv)).assignee_id == first
    # Assigned now: the assignee stays, the rest of the change applies in the same event.
    result = await engine.update_conversation(tenant.org, conv, assignee_id=second, add_tags=["vip"], actor=actor,
                                              only_if_unassigned=True)
    assert result.changed and result.assignee_kept
    c = await engine.conversation(tenant.org, conv)
    assert (c.assignee_id, c.tags) == (first, ("vip",))
    last = [f for t, f in await _stream_entries(redis_client, config, tenant.org, conv) if t == b"u"][-1]
    assert last["changes"] == ["tags"] and last["conversation"]["assignee_id"] == first
    # Nothing else to change: no event at all.
    before = len(await _stream_entries(redis_client, config, tenant.org, conv))
    result = await engine.update_conversation(tenant.org, conv, assignee_id=second, actor=actor,
                                              only_if_unassigned=True)
    assert not result and result.assignee_kept
    assert len(await _stream_entries(redis_client, config, tenant.org, conv)) == before
    # Without the flag the same call reassigns.
    result = await engine.update_conversation(tenant.org, conv, assignee_id=second, actor=actor)
    assert result and not result.assignee_kept
    assert (await engine.conversation(tenant.org, conv)).assignee_id == second


async def test_shopper_view_of_updates_hides_internal_fields(engine, tenant, redis_client, config):
    conv = (await engine.start_conversation(tenant.org, tenant.contacts[0], tenant.app, body="hi")).conversation_id
    await engine.update_conversation(tenant.org, conv, add_tags=["internal"], assignee_id=tenant.agents[0],
                                     actor=("member", tenant.agents[0]))
    stream = keys.stream(keys.shard_of(tenant.org, config.engine.shards))
    last = [f for _, f in await redis_client.xrange(stream) if f[b"c"].decode() == conv][-1]
    shopper = orjson.loads(last[b"fs"])["conversation"]
    assert "tags" not in shopper and "assignee_id" not in shopper and shopper["id"] == conv


async def test_delete_message_and_conversation(engine, tenant):
    contact = tenant.contacts[0]
    conv = (await engine.start_conversation(tenant.org, contact, tenant.app, body="secret")).conversation_id
    await engine.send_message(tenant.org, conv, type="outgoing", author_kind="member", author_id=tenant.agents[0], body="a")
    refused = []

    def only_own(message):
        refused.append(message["author_id"])
        raise EngineError("not_found")

    with pytest.raises(EngineError):
        await engine.delete_message(tenant.org, conv, 1, actor=("member", tenant.agents[0]), authorize=only_own)
    assert refused == [contact]
    tomb = await engine.delete_message(tenant.org, conv, 1, actor=("member", tenant.admins[0]))
    assert tomb["deleted"] and tomb["body"] == "" and tomb["seq"] == 1
    frames, _, _ = await engine.missed(tenant.org, conv, 0)
    first = orjson.loads(frames[0])["message"]
    assert first["deleted"] and first["body"] == "" and b"secret" not in b"".join(frames)
    with pytest.raises(EngineError) as err:
        await engine.delete_message(tenant.org, conv, 1, actor=("member", tenant.admins[0]))
    assert err.value.code == "not_found"
    await engine.delete_conversation(tenant.org, conv, actor=("member", tenant.admins[0]))
    assert await engine.conversation(tenant.org, conv) is None
    with pytest.raises(EngineError) as err:
        await engine.send_message(tenant.org, conv, type="incoming", author_kind="contact", author_id=contact,
                                  body="after", contact_id=contact)
    assert err.value.code == "not_found"


async def test_resume_and_history_span_redis_and_postgres(config, db, redis_client, tenant):
    cfg = config.replace(engine={"recent_messages": 5, "claim_idle_ms": 60000})
    engine = EngineClient(cfg, pool=db)
    await engine.start()
    try:
        contact = tenant.contacts[0]
        conv = (await engine.start_conversation(tenant.org, contact, tenant.app, body="m1")).conversation_id
        for i in range(2, 31):
            kind = "note" if i % 10 == 0 else "outgoing"
            await engine.send_message(tenant.org, conv, type=kind, author_kind="member", author_id=tenant.agents[0],
                                      body=f"m{i}")
        # Not persisted yet: Redis keeps all 30 although its cap is 5.
        frames, last, _ = await engine.missed(tenant.org, conv, 3)
        assert [orjson.loads(f)["message"]["seq"] for f in frames] == list(range(4, 31)) and last == 30
        await _persist_everything(cfg, redis_client, db)
        await engine.send_message(tenant.org, conv, type="outgoing", author_kind="member", author_id=tenant.agents[0],
                                  body="m31")
        assert await redis_client.llen(keys.recent(keys.shard_of(tenant.org, cfg.engine.shards), conv)) == 5
        frames, last, complete = await engine.missed(tenant.org, conv, 3)
        assert complete and last == 31
        assert [orjson.loads(f)["message"]["seq"] for f in frames] == list(range(4, 32))
        bodies = [orjson.loads(f)["message"]["body"] for f in frames]
        assert bodies == [f"m{i}" for i in range(4, 32)]
        # A shopper never gets notes, from either source.
        shopper, _, _ = await engine.missed(tenant.org, conv, 0, contact_id=contact, include_notes=False)
        assert [orjson.loads(f)["message"]["seq"] for f in shopper] == [i for i in range(1, 32) if i % 10]
        page, more = await engine.history(tenant.org, conv, before_seq=30, limit=10)
        assert [orjson.loads(p)["seq"] for p in page] == list(range(20, 30)) and more
        page, more = await engine.history(tenant.org, conv, limit=3)
        assert [orjson.loads(p)["seq"] for p in page] == [29, 30, 31] and more
        page, more = await engine.history(tenant.org, conv, before_seq=4, limit=10)
        assert [orjson.loads(p)["seq"] for p in page] == [1, 2, 3] and not more
        # Cold conversation: its Redis state is gone, PostgreSQL brings it back, numbering goes on.
        shard = keys.shard_of(tenant.org, cfg.engine.shards)
        await redis_client.delete(keys.meta(shard, conv), keys.recent(shard, conv))
        await _persist_everything(cfg, redis_client, db)
        await redis_client.delete(keys.meta(shard, conv), keys.recent(shard, conv))
        ack = await engine.send_message(tenant.org, conv, type="incoming", author_kind="contact", author_id=contact,
                                        body="m32", contact_id=contact)
        assert ack.seq == 32
        frames, _, _ = await engine.missed(tenant.org, conv, 28)
        assert [orjson.loads(f)["message"]["seq"] for f in frames] == [29, 30, 31, 32]
    finally:
        await engine.close()


async def _persist_everything(cfg, redis_client, db):
    worker = Worker(cfg, redis=redis_client, pool=db, consumer=f"test-{uuid.uuid4().hex[:6]}")
    await worker.setup()
    while await worker.step():
        pass


async def test_publish_control_writes_revocation_records(engine, tenant, redis_client):
    user = tenant.agents[0]
    await engine.publish_control({"kind": "member_removed", "org": tenant.org, "user": user})
    cut, version = (await redis_client.get(keys.revoked_subject(tenant.org, user))).decode().split(":")
    assert int(cut) > 0 and version == "-1"
    await engine.publish_control({"kind": "role_changed", "org": tenant.org, "user": tenant.agents[1], "version": 4})
    assert (await redis_client.get(keys.revoked_subject(tenant.org, tenant.agents[1]))) == b"-1:4"
    await engine.publish_control({"kind": "token_revoked", "jti": "abcdef0123", "exp": 10**10})
    assert await redis_client.exists(keys.revoked_token("abcdef0123"))
    for bad in ({"kind": "explode"}, {"kind": "member_removed", "org": "x", "user": user},
                {"kind": "token_revoked", "jti": "j"}):
        with pytest.raises(EngineError):
            await engine.publish_control(bad)


async def test_create_conversation_for_api(engine, tenant):
    conv = await engine.create_conversation(tenant.org, tenant.contacts[1], tenant.app, channel="api",
                                            actor=("api", "key1"))
    c = await engine.conversation(tenant.org, conv)
    assert c.status == "open" and c.seq == 0 and c.contact_id == tenant.contacts[1]
    ack = await engine.send_message(tenant.org, conv, type="outgoing", author_kind="api", author_id="key1", body="hi")
    assert ack.seq == 1
    assert await engine.update_conversation(tenant.org, conv, assignee_id=KEEP, status="pending")
