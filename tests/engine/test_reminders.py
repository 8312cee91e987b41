"""Reminders against real PostgreSQL and Redis: a note posted at the time, the agent notified live,
several per conversation, fired once by competing workers, and across an engine restart."""

import asyncio
import uuid

import orjson
import pytest
import redis.asyncio as aioredis

from convot.db import scoped
from engine.assignment import run_workflow
from engine.client import EngineClient
from engine.reminders import ReminderLoop, client_msg_id, note_body
from tests.engine.listener import Listener
from tests.engine.seed import seed_tenant


@pytest.fixture
def wf_config(servers):
    return servers.config(workflow={"reminder_poll_interval": 0.2})


@pytest.fixture
async def engine(wf_config, db):
    client = EngineClient(wf_config, pool=db)
    await client.start()
    yield client
    await client.close()


@pytest.fixture
async def tenant(owner_db):
    return await seed_tenant(owner_db, agents=2, admins=0, contacts=2)


async def persisted_conversation(owner_db, tenant, i=0) -> str:
    """A conversation as PostgreSQL has it (cold in Redis: the engine hydrates it when needed)."""
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", tenant.org)
        return str(await owner_db.fetchval(
            "INSERT INTO conversations (org_id, app_id, contact_id) VALUES ($1, $2, $3) RETURNING id",
            tenant.org, tenant.app, tenant.contacts[i]))


async def remind(db, org, conv, user, *, seconds: float, note="Call the merchant back") -> str:
    async with scoped(db, org_id=org) as conn:
        return str(await conn.fetchval(
            "INSERT INTO reminders (org_id, conversation_id, user_id, remind_at, note) "
            "VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5) RETURNING id",
            org, conv, user, seconds, note))


async def notes(engine, org, conv) -> list[dict]:
    items, _ = await engine.history(org, conv, limit=200)
    return [m for m in map(orjson.loads, items) if m["type"] == "note"]


async def reminder_row(db, org, reminder_id):
    async with scoped(db, org_id=org) as conn:
        return await conn.fetchrow("SELECT fired_at, outcome, message_seq FROM reminders WHERE id = $1", reminder_id)


async def wait_fired(db, org, reminder_id, timeout=6.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        row = await reminder_row(db, org, reminder_id)
        if row["fired_at"] is not None:
            return row
        await asyncio.sleep(0.05)
    raise AssertionError("the reminder did not fire")


def test_note_text_and_idempotency_key():
    assert note_body("  call back ") == "Reminder: call back" and note_body("") == "Reminder"
    rid = uuid.uuid4()
    assert client_msg_id(rid) == f"reminder:{rid}" and len(client_msg_id(rid)) <= 64


async def test_a_reminder_one_second_ahead_posts_its_note_and_notifies_the_agent(
        wf_config, engine, db, redis_client, owner_db, tenant):
    agent = tenant.agents[0]
    conv = await persisted_conversation(owner_db, tenant)
    rid = await remind(db, tenant.org, conv, agent, seconds=1.0)
    loop_ = ReminderLoop(wf_config, db, redis_client, engine)
    stop = asyncio.Event()
    async with Listener(redis_client, wf_config, tenant.org) as listener:
        task = asyncio.get_running_loop().create_task(loop_.run(stop))
        try:
            assert await reminder_row(db, tenant.org, rid) is not None
            audience, frame = await listener.wait_for("notification", timeout=6)
        finally:
            stop.set()
            await task
    row = await reminder_row(db, tenant.org, rid)
    assert row["outcome"] == "posted" and row["message_seq"] == 1
    n = frame["notification"]
    assert audience == b"m"                      # members only, never a shopper's socket
    assert (n["kind"], n["user_id"], n["conversation_id"], n["reminder_id"], n["message_seq"], n["note"]) == (
        "reminder", agent, conv, rid, 1, "Call the merchant back")
    [note] = await notes(engine, tenant.org, conv)
    assert (note["body"], note["author_kind"], note["client_msg_id"]) == (
        "Reminder: Call the merchant back", "system", f"reminder:{rid}")
    assert note["meta"]["reminder"]["user_id"] == agent
    async with scoped(db, org_id=tenant.org) as conn:
        stored = await conn.fetch("SELECT user_id, kind, conversation_id, message_seq FROM notifications "
                                  "WHERE org_id = $1", tenant.org)
    assert [(str(r["user_id"]), r["kind"], str(r["conversation_id"]), r["message_seq"]) for r in stored] == [
        (agent, "reminder", conv, 1)]


async def test_it_fires_when_the_engine_was_restarted_in_between(wf_config, db, owner_db, tenant, engine, servers):
    agent = tenant.agents[1]
    conv = await persisted_conversation(owner_db, tenant)
    rid = await remind(db, tenant.org, conv, agent, seconds=1.0, note="Follow up")
    # First engine: its workflow runs, then stops before the reminder is due.
    redis_one = aioredis.Redis.from_url(servers.redis_url)
    stop = asyncio.Event()
    first = asyncio.get_running_loop().create_task(run_workflow(wf_config, db, redis_one, stop))
    await asyncio.sleep(0.3)
    stop.set()
    await first
    await redis_one.aclose()
    assert (await reminder_row(db, tenant.org, rid))["fired_at"] is None
    await asyncio.sleep(1.0)                       # due while no engine runs
    # A new engine process (new connections, new loop) fires it.
    redis_two = aioredis.Redis.from_url(servers.redis_url)
    stop = asyncio.Event()
    async with Listener(redis_two, wf_config, tenant.org) as listener:
        second = asyncio.get_running_loop().create_task(run_workflow(wf_config, db, redis_two, stop))
        try:
            _, frame = await listener.wait_for("notification", timeout=6)
        finally:
            stop.set()
            await second
    await redis_two.aclose()
    assert frame["notification"]["reminder_id"] == rid and frame["notification"]["user_id"] == agent
    assert [n["body"] for n in await notes(engine, tenant.org, conv)] == ["Reminder: Follow up"]


async def test_several_reminders_per_conversation_fire_in_order_and_once_with_competing_workers(
        wf_config, db, redis_client, owner_db, tenant, engine):
    a, b = tenant.agents
    conv = await persisted_conversation(owner_db, tenant)
    ids = [await remind(db, tenant.org, conv, a, seconds=-3, note="first"),
           await remind(db, tenant.org, conv, b, seconds=-2, note="second"),
           await remind(db, tenant.org, conv, a, seconds=-1, note="third")]
    later = await remind(db, tenant.org, conv, a, seconds=3600, note="tomorrow")
    workers = [ReminderLoop(wf_config, db, redis_client, engine) for _ in range(3)]
    fired = await asyncio.gather(*(w.fire_org(tenant.org) for w in workers))
    assert sum(fired) == 3
    assert [n["body"] for n in await notes(engine, tenant.org, conv)] == [
        "Reminder: first", "Reminder: second", "Reminder: third"]
    for rid, seq in zip(ids, (1, 2, 3)):
        assert (await reminder_row(db, tenant.org, rid))["message_seq"] == seq
    assert (await reminder_row(db, tenant.org, later))["fired_at"] is None


async def test_a_retry_after_a_failed_commit_does_not_post_twice(wf_config, db, redis_client, owner_db, tenant, engine):
    conv = await persisted_conversation(owner_db, tenant)
    rid = await remind(db, tenant.org, conv, tenant.agents[0], seconds=-1, note="once")
    # An earlier attempt posted the note, then its transaction was lost before COMMIT.
    await engine.send_message(tenant.org, conv, type="note", author_kind="system", author_id=None,
                              body=note_body("once"), client_msg_id=client_msg_id(rid))
    assert await ReminderLoop(wf_config, db, redis_client, engine).fire_org(tenant.org) == 1
    assert [n["body"] for n in await notes(engine, tenant.org, conv)] == ["Reminder: once"]
    assert (await reminder_row(db, tenant.org, rid))["message_seq"] == 1


async def test_a_reminder_on_a_deleted_conversation_is_closed_without_a_note(
        wf_config, db, redis_client, owner_db, tenant, engine):
    conv = await persisted_conversation(owner_db, tenant)
    rid = await remind(db, tenant.org, conv, tenant.agents[0], seconds=-1)
    await engine.delete_conversation(tenant.org, conv, actor=("member", tenant.agents[0]))
    async with Listener(redis_client, wf_config, tenant.org) as listener:
        assert await ReminderLoop(wf_config, db, redis_client, engine).fire_org(tenant.org) == 1
        assert [f for _, f in await listener.frames(0.3) if f["type"] == "notification"] == []
    row = await reminder_row(db, tenant.org, rid)
    assert row["fired_at"] is not None and row["outcome"] == "conversation_gone" and row["message_seq"] is None


async def test_only_due_organisations_are_visited_and_tenants_stay_apart(
        wf_config, db, redis_client, owner_db, tenant, engine):
    other = await seed_tenant(owner_db, agents=1, admins=0, contacts=1)
    conv_a = await persisted_conversation(owner_db, tenant)
    conv_b = await persisted_conversation(owner_db, other)
    due = await remind(db, tenant.org, conv_a, tenant.agents[0], seconds=-1, note="A's")
    not_due = await remind(db, other.org, conv_b, other.agents[0], seconds=3600, note="B's")
    async with db.acquire() as conn:
        orgs = {str(r[0]) for r in await conn.fetch("SELECT convot_due_reminder_orgs(1000)")}
        assert tenant.org in orgs and other.org not in orgs
        # the services' role sees no reminder rows outside a scope
        assert await conn.fetchval("SELECT count(*) FROM reminders") == 0
    await ReminderLoop(wf_config, db, redis_client, engine).poll()
    assert (await reminder_row(db, tenant.org, due))["outcome"] == "posted"
    assert (await reminder_row(db, other.org, not_due))["fired_at"] is None
    assert await notes(engine, other.org, conv_b) == []
    loop_ = ReminderLoop(wf_config, db, redis_client, engine)
    assert 0 < await loop_.next_due_in() <= wf_config.workflow.reminder_poll_interval

