"""Auto-assignment against real Redis and PostgreSQL: strategies among online agents, ordered
rules, business hours with a controlled clock, assigned-once under races, and the
``conversation.assigned`` event on sockets (through a real gateway) and webhooks."""

import asyncio
import datetime as dt
import uuid
from collections import Counter

import orjson
import pytest

from convot.db import scoped
from convot.tokens import TokenIssuer
from engine import keys
from engine.assignment import Assigner, hours_of, new_conversation, run_assigner
from engine.availability import Presence, set_choice
from engine.client import EngineClient
from engine.rules import pick_least_loaded
from engine.webhooks import StreamDispatcher, events_from_entry
from tests.engine.seed import seed_tenant
from tests.gateway.conftest import Harness, start_gateway, stop_gateway

UTC = dt.timezone.utc


@pytest.fixture
def wf_config(servers):
    return servers.config(workflow={"presence_grace": 0.5, "presence_lease": 60.0})


@pytest.fixture
async def engine(wf_config, db):
    client = EngineClient(wf_config, pool=db)
    await client.start()
    yield client
    await client.close()


@pytest.fixture
def presence(wf_config, db, redis_client):
    return Presence(wf_config, redis_client, db)


@pytest.fixture
async def tenant(owner_db):
    return await seed_tenant(owner_db, agents=3, admins=0, contacts=10)


@pytest.fixture
def make_assigner(wf_config, db, redis_client, engine, presence):
    async def make(clock=None) -> Assigner:
        kwargs = {"clock": clock} if clock else {}
        assigner = Assigner(wf_config, db, redis_client, engine, presence, group=f"assign-{uuid.uuid4().hex[:8]}",
                            **kwargs)
        await assigner.setup()
        return assigner
    return make


async def set_org(db, org, **columns):
    async with scoped(db, org_id=org) as conn:
        for column, value in columns.items():
            assert column in ("assignment_strategy", "timezone", "business_hours", "round_robin_cursor")
            await conn.execute(f"UPDATE organisations SET {column} = $2 WHERE id = $1", org, value)


async def online(db, presence, org, *agents, choice="online"):
    for agent in agents:
        async with scoped(db, org_id=org) as conn:
            await set_choice(conn, org, agent, choice)
        await presence.set_entries(org, [(agent, f"test-{agent[:8]}", 600_000, "c")])


async def add_rule(db, org, position, conditions, actions, name="rule"):
    async with scoped(db, org_id=org) as conn:
        return str(await conn.fetchval(
            "INSERT INTO assignment_rules (org_id, position, name, conditions, actions) VALUES ($1, $2, $3, $4, $5) "
            "RETURNING id", org, position, name, conditions, actions))


async def until_idle(assigner):
    while await assigner.step(block_ms=100):
        pass


async def start(engine, tenant, i, body="Hello"):
    return (await engine.start_conversation(tenant.org, tenant.contacts[i], tenant.app, body=body)).conversation_id


async def assignee(engine, tenant, conv):
    return (await engine.conversation(tenant.org, conv)).assignee_id or None


async def assignment_updates(redis_client, config, org, conv):
    stream = keys.stream(keys.shard_of(org, config.engine.shards))
    out = []
    for entry_id, f in await redis_client.xrange(stream):
        if f[b"c"].decode() == conv and f[b"t"] == b"u":
            frame = orjson.loads(f[b"f"])
            if "assignment" in frame["changes"]:
                out.append((entry_id, f, frame))
    return out


# ---- strategies ------------------------------------------------------------------------------

async def test_round_robin_nine_new_conversations_go_three_three_three(make_assigner, engine, presence, db, tenant,
                                                                        redis_client, wf_config):
    await set_org(db, tenant.org, assignment_strategy="round_robin")
    await online(db, presence, tenant.org, *tenant.agents)
    assigner = await make_assigner()
    convs = [await start(engine, tenant, i) for i in range(9)]
    await until_idle(assigner)
    owners = [await assignee(engine, tenant, c) for c in convs]
    assert Counter(owners) == {a: 3 for a in tenant.agents}
    first = await assignment_updates(redis_client, wf_config, tenant.org, convs[0])
    assert len(first) == 1 and first[0][2]["actor"] == {"kind": "system", "id": "auto_assign"}
    async with scoped(db, org_id=tenant.org) as conn:
        assert await conn.fetchval("SELECT round_robin_cursor FROM organisations WHERE id = $1", tenant.org) == 9
        outcomes = await conn.fetch("SELECT outcome, applied_at FROM auto_assignments WHERE org_id = $1", tenant.org)
    assert len(outcomes) == 9 and {r["outcome"] for r in outcomes} == {"round_robin"}
    assert all(r["applied_at"] is not None for r in outcomes)


async def test_manual_without_rules_decides_nothing_and_a_rule_makes_it_decide(make_assigner, engine, presence, db,
                                                                                 tenant):
    await set_org(db, tenant.org, assignment_strategy="manual")
    await online(db, presence, tenant.org, *tenant.agents)
    assigner = await make_assigner()
    plain = await start(engine, tenant, 0)
    await until_idle(assigner)
    assert await assignee(engine, tenant, plain) is None
    async with scoped(db, org_id=tenant.org) as conn:
        assert await conn.fetchval("SELECT count(*) FROM auto_assignments WHERE org_id = $1", tenant.org) == 0
    await add_rule(db, tenant.org, 1, [{"type": "keyword", "values": ["refund"]}],
                   [{"type": "assign", "user_id": tenant.agents[1]}])
    ruled = await start(engine, tenant, 1, "refund please")
    other = await start(engine, tenant, 2, "hello")
    await until_idle(assigner)
    assert await assignee(engine, tenant, ruled) == tenant.agents[1]
    assert await assignee(engine, tenant, other) is None
    async with scoped(db, org_id=tenant.org) as conn:
        rows = dict(await conn.fetch("SELECT conversation_id::text, outcome FROM auto_assignments WHERE org_id = $1",
                                     tenant.org))
    assert rows == {ruled: "rule_assigned", other: "manual"}


async def test_offline_busy_and_absent_agents_get_none(make_assigner, engine, presence, db, tenant, owner_db):
    team = await seed_tenant(owner_db, agents=5, admins=0, contacts=6)
    a, b, busy, absent, offline = team.agents
    await set_org(db, team.org, assignment_strategy="round_robin")
    await online(db, presence, team.org, a, b)
    await online(db, presence, team.org, busy, choice="busy")
    await online(db, presence, team.org, offline, choice="offline")
    async with scoped(db, org_id=team.org) as conn:
        await set_choice(conn, team.org, absent, "online")          # chose online, but no inbox open
    assigner = await make_assigner()
    convs = [await start(engine, team, i) for i in range(6)]
    await until_idle(assigner)
    assert Counter([await assignee(engine, team, c) for c in convs]) == {a: 3, b: 3}


async def test_nobody_online_leaves_it_unassigned(make_assigner, engine, db, tenant):
    await set_org(db, tenant.org, assignment_strategy="load_balanced")
    assigner = await make_assigner()
    conv = await start(engine, tenant, 0)
    await until_idle(assigner)
    assert await assignee(engine, tenant, conv) is None
    async with scoped(db, org_id=tenant.org) as conn:
        assert await conn.fetchval("SELECT outcome FROM auto_assignments WHERE conversation_id = $1", conv) \
            == "nobody_online"


async def test_load_balanced_goes_to_the_agent_with_fewest_open_conversations(make_assigner, engine, presence, db,
                                                                               tenant, owner_db):
    dana, erin, fred = tenant.agents
    # Open conversations already in PostgreSQL: Dana 3, Erin 1 (+3 resolved, + 2 pending), Fred 2.
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", tenant.org)
        for agent, status, count in ((dana, "open", 3), (erin, "open", 1), (erin, "resolved", 3),
                                     (erin, "pending", 2), (fred, "open", 2)):
            for _ in range(count):
                await owner_db.execute(
                    "INSERT INTO conversations (org_id, app_id, contact_id, status, assignee_id) VALUES ($1, $2, $3, $4, $5)",
                    tenant.org, tenant.app, tenant.contacts[9], status, agent)
    await set_org(db, tenant.org, assignment_strategy="load_balanced")
    await online(db, presence, tenant.org, *tenant.agents)
    assigner = await make_assigner()
    first = await start(engine, tenant, 0)
    await until_idle(assigner)
    assert await assignee(engine, tenant, first) == erin
    # The next one counts Erin's new conversation before PostgreSQL shows it: Erin 2, Fred 2, Dana 3.
    second = await start(engine, tenant, 1)
    await until_idle(assigner)
    assert await assignee(engine, tenant, second) == pick_least_loaded([erin, fred], {})
    # An offline agent is never picked, however idle.
    await online(db, presence, tenant.org, erin, choice="offline")
    third = await start(engine, tenant, 2)
    await until_idle(assigner)
    assert await assignee(engine, tenant, third) in (dana, fred)


async def test_two_workers_racing_on_the_same_new_conversations_assign_each_once(
        make_assigner, engine, presence, db, tenant, redis_client, wf_config):
    await set_org(db, tenant.org, assignment_strategy="round_robin")
    await online(db, presence, tenant.org, *tenant.agents)
    one, two = await make_assigner(), await make_assigner()    # two groups: both see every entry
    convs = [await start(engine, tenant, i) for i in range(9)]
    await asyncio.gather(until_idle(one), until_idle(two))
    assert Counter([await assignee(engine, tenant, c) for c in convs]) == {a: 3 for a in tenant.agents}
    for conv in convs:
        assert len(await assignment_updates(redis_client, wf_config, tenant.org, conv)) == 1
    async with scoped(db, org_id=tenant.org) as conn:
        assert await conn.fetchval("SELECT round_robin_cursor FROM organisations WHERE id = $1", tenant.org) == 9
        assert await conn.fetchval("SELECT count(*) FROM auto_assignments WHERE org_id = $1", tenant.org) == 9


async def test_a_decided_but_unapplied_conversation_is_applied_once_by_the_next_worker(
        make_assigner, engine, presence, db, tenant, redis_client, wf_config):
    """A worker that died between its decision and applying it: the entry is read again."""
    await set_org(db, tenant.org, assignment_strategy="round_robin")
    await online(db, presence, tenant.org, *tenant.agents)
    assigner = await make_assigner()
    conv = await start(engine, tenant, 0)
    stream = keys.stream(keys.shard_of(tenant.org, wf_config.engine.shards))
    entries = [(stream, eid, f) for eid, f in await redis_client.xrange(stream)
               if f[b"c"].decode() == conv and f[b"t"] == b"m"]
    job = new_conversation(entries[0][2])
    decision, applied = await assigner._decide(job)          # decided and committed, then "crashed"
    assert not applied and await assignee(engine, tenant, conv) is None
    await assigner.handle(entries)                           # redelivered: same decision, applied
    await assigner.handle(entries)                           # and again: nothing more
    assert await assignee(engine, tenant, conv) == decision.assignee
    assert len(await assignment_updates(redis_client, wf_config, tenant.org, conv)) == 1
    await until_idle(assigner)


# ---- rules ----------------------------------------------------------------------------------------

async def test_keyword_rule_assigns_to_dana_when_online_else_the_default_strategy(
        make_assigner, engine, presence, db, tenant):
    dana, erin, fred = tenant.agents
    await set_org(db, tenant.org, assignment_strategy="round_robin")
    rule_id = await add_rule(db, tenant.org, 1, [{"type": "keyword", "values": ["refund"]}],
                             [{"type": "assign", "user_id": dana}], "Refunds to Dana")
    await online(db, presence, tenant.org, dana, erin, fred)
    assigner = await make_assigner()
    refund = await start(engine, tenant, 0, "I would like a REFUND for order 1001")
    other = await start(engine, tenant, 1, "Where is my parcel?")
    await until_idle(assigner)
    assert await assignee(engine, tenant, refund) == dana
    assert await assignee(engine, tenant, other) == sorted(tenant.agents)[0]      # round-robin, cursor 0
    async with scoped(db, org_id=tenant.org) as conn:
        row = await conn.fetchrow("SELECT rule_id, outcome FROM auto_assignments WHERE conversation_id = $1", refund)
    assert (str(row["rule_id"]), row["outcome"]) == (rule_id, "rule_assigned")
    # Dana goes offline: the rule is skipped and the default strategy picks an online agent.
    await online(db, presence, tenant.org, dana, choice="offline")
    again = await start(engine, tenant, 2, "refund please")
    await until_idle(assigner)
    assert await assignee(engine, tenant, again) in (erin, fred)
    async with scoped(db, org_id=tenant.org) as conn:
        assert await conn.fetchval("SELECT outcome FROM auto_assignments WHERE conversation_id = $1", again) \
            == "rule_fallback"


async def test_business_hours_rule_flips_at_the_boundary_in_the_organisations_zone(
        make_assigner, engine, presence, db, tenant):
    dana, erin, _ = tenant.agents
    await set_org(db, tenant.org, assignment_strategy="manual", timezone="America/New_York",
                  business_hours=[{"day": d, "start": "09:00", "end": "17:00"} for d in range(5)])
    await add_rule(db, tenant.org, 1, [{"type": "business_hours", "value": "outside"}],
                   [{"type": "assign", "user_id": dana}, {"type": "add_tag", "tag": "After hours"}])
    await add_rule(db, tenant.org, 2, [{"type": "business_hours", "value": "inside"}],
                   [{"type": "assign", "user_id": erin}])
    await online(db, presence, tenant.org, dana, erin)
    now = [dt.datetime(2026, 1, 14, 13, 59, 59, tzinfo=UTC)]      # Wednesday 08:59:59 in New York
    assigner = await make_assigner(clock=lambda: now[0])
    before = await start(engine, tenant, 0)
    await until_idle(assigner)
    now[0] = dt.datetime(2026, 1, 14, 14, 0, 0, tzinfo=UTC)       # 09:00:00: open
    after = await start(engine, tenant, 1)
    await until_idle(assigner)
    assert await assignee(engine, tenant, before) == dana
    assert (await engine.conversation(tenant.org, before)).tags == ("after-hours",)
    assert await assignee(engine, tenant, after) == erin
    assert (await engine.conversation(tenant.org, after)).tags == ()


async def test_conditions_on_app_channel_and_contact_tag_and_the_skip_action(
        make_assigner, engine, presence, db, tenant, owner_db):
    await set_org(db, tenant.org, assignment_strategy="round_robin")
    await online(db, presence, tenant.org, *tenant.agents)
    vip_contact = tenant.contacts[3]
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", tenant.org)
        tag = await owner_db.fetchval("INSERT INTO tags (org_id, name) VALUES ($1, 'vip') RETURNING id", tenant.org)
        await owner_db.execute("INSERT INTO contact_tags VALUES ($1, $2, $3)", tenant.org, vip_contact, tag)
    await add_rule(db, tenant.org, 1, [{"type": "contact_tag", "values": ["vip"]}, {"type": "app", "values": [tenant.app]},
                                       {"type": "channel", "values": ["widget"]}],
                   [{"type": "skip_assignment"}, {"type": "add_tag", "tag": "vip-queue"}])
    assigner = await make_assigner()
    vip = await start(engine, tenant, 3)
    regular = await start(engine, tenant, 4)
    await until_idle(assigner)
    live = await engine.conversation(tenant.org, vip)
    assert (live.assignee_id, live.tags) == ("", ("vip-queue",))
    assert await assignee(engine, tenant, regular) is not None


async def test_a_conversation_assigned_by_hand_first_keeps_its_assignee(make_assigner, engine, presence, db, tenant):
    dana, erin, _ = tenant.agents
    await set_org(db, tenant.org, assignment_strategy="round_robin")
    await online(db, presence, tenant.org, dana)
    assigner = await make_assigner()
    conv = await start(engine, tenant, 0)
    await engine.update_conversation(tenant.org, conv, assignee_id=erin, actor=("member", dana))
    await until_idle(assigner)
    assert await assignee(engine, tenant, conv) == erin
    async with scoped(db, org_id=tenant.org) as conn:
        assert await conn.fetchval("SELECT outcome FROM auto_assignments WHERE conversation_id = $1", conv) \
            == "already_assigned"


async def test_a_manual_assignment_between_the_decision_and_the_apply_is_kept(make_assigner, engine, presence, db,
                                                                                 tenant, redis_client, wf_config):
    dana, erin, _ = tenant.agents
    await set_org(db, tenant.org, assignment_strategy="manual")
    await add_rule(db, tenant.org, 1, [{"type": "keyword", "values": ["refund"]}],
                   [{"type": "assign", "user_id": dana}, {"type": "add_tag", "tag": "refunds"}])
    await online(db, presence, tenant.org, dana)
    assigner = await make_assigner()
    conv = await start(engine, tenant, 0, "refund please")
    stream = keys.stream(keys.shard_of(tenant.org, wf_config.engine.shards))
    [fields] = [f for _, f in await redis_client.xrange(stream) if f[b"c"].decode() == conv and f[b"t"] == b"m"]
    job = new_conversation(fields)
    decision, applied = await assigner._decide(job)
    assert not applied and decision.assignee == dana
    await engine.update_conversation(tenant.org, conv, assignee_id=erin, actor=("member", erin))   # by hand
    result = await assigner._apply(job, decision)
    assert result.outcome == "already_assigned" and result.assignee is None
    live = await engine.conversation(tenant.org, conv)
    assert (live.assignee_id, live.tags) == (erin, ("refunds",))          # Erin stays; the tag is added
    updates = await assignment_updates(redis_client, wf_config, tenant.org, conv)
    assert [u[2]["actor"] for u in updates] == [{"kind": "member", "id": erin}]
    async with scoped(db, org_id=tenant.org) as conn:
        row = await conn.fetchrow("SELECT outcome, applied_at FROM auto_assignments WHERE conversation_id = $1", conv)
    assert row["outcome"] == "already_assigned" and row["applied_at"] is not None


async def test_a_manual_assignment_landing_just_before_the_update_script_is_kept(make_assigner, engine, presence,
                                                                                 db, tenant, redis_client,
                                                                                 wf_config, monkeypatch):
    """The window a read-then-write check leaves open: the agent's assignment reaches Redis after
    anything the assigner could have read and before its own update; update.lua decides."""
    dana, erin, _ = tenant.agents
    await set_org(db, tenant.org, assignment_strategy="round_robin")
    await online(db, presence, tenant.org, dana)
    assigner = await make_assigner()
    conv = await start(engine, tenant, 0)
    original = engine.update_conversation
    by_hand = []

    async def agent_first(org, conversation, **kw):
        if kw.get("actor") == ("system", "auto_assign") and not by_hand:
            by_hand.append(await original(org, conversation, assignee_id=erin, actor=("member", erin)))
        return await original(org, conversation, **kw)

    monkeypatch.setattr(engine, "update_conversation", agent_first)
    await until_idle(assigner)
    assert by_hand and by_hand[0].changed                                 # the interleaving happened
    assert await assignee(engine, tenant, conv) == erin
    updates = await assignment_updates(redis_client, wf_config, tenant.org, conv)
    assert [u[2]["actor"] for u in updates] == [{"kind": "member", "id": erin}]
    async with scoped(db, org_id=tenant.org) as conn:
        assert await conn.fetchval("SELECT outcome FROM auto_assignments WHERE conversation_id = $1", conv) \
            == "already_assigned"


async def test_only_a_contacts_first_message_starts_auto_assignment(make_assigner, engine, presence, db, tenant):
    await set_org(db, tenant.org, assignment_strategy="round_robin")
    await online(db, presence, tenant.org, *tenant.agents)
    assigner = await make_assigner()
    team_started = await engine.create_conversation(tenant.org, tenant.contacts[0], tenant.app,
                                                    actor=("member", tenant.agents[0]))
    await engine.send_message(tenant.org, team_started, type="outgoing", author_kind="member",
                              author_id=tenant.agents[0], body="Hi, following up on your order")
    await until_idle(assigner)
    assert await assignee(engine, tenant, team_started) is None
    assert new_conversation({}) is None and new_conversation({b"t": b"m", b"s": b"1", b"f": b"{not json"}) is None


def test_an_unreadable_schedule_means_no_schedule():
    assert not hours_of("Nowhere/Land", [{"day": 9}]).scheduled
    assert hours_of("Europe/Paris", "garbage").timezone == "Europe/Paris"


# ---- the event on sockets and webhooks -------------------------------------------------------------

async def test_assignment_reaches_inbox_sockets_and_webhooks(wf_config, make_assigner, engine, presence, db,
                                                              redis_client, tenant, owner_db):
    dana = tenant.agents[0]
    await set_org(db, tenant.org, assignment_strategy="round_robin")
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", tenant.org)
        await owner_db.execute("INSERT INTO webhooks (org_id, url, secret_enc, events) VALUES "
                               "($1, 'https://hooks.example.com/x', '\\x00', '{conversation.assigned}')", tenant.org)
    dispatcher = StreamDispatcher(wf_config, db, redis_client, group=f"wh-{uuid.uuid4().hex[:8]}")
    await dispatcher.setup()
    assigner = await make_assigner()
    gateway = await start_gateway(wf_config)
    h = Harness(wf_config, f"ws://127.0.0.1:{wf_config.gateway.port}/", TokenIssuer(wf_config))
    runner_stop = asyncio.Event()
    runner = asyncio.get_running_loop().create_task(run_assigner(assigner, runner_stop))
    try:
        inbox = await h.member(tenant, dana)               # presence from the real socket
        await inbox.send(type="presence", state="online", ref="p")
        await inbox.expect("ok")
        shopper = await h.shopper(tenant)
        await shopper.send(type="send", client_msg_id="first", body="Hello, anyone there?")
        conv = (await shopper.expect("ack"))["conversation_id"]
        update = await inbox.expect("conversation.update", timeout=10)
        while "assignment" not in update["changes"]:
            update = await inbox.expect("conversation.update", timeout=10)
        assert update["conversation"]["id"] == conv and update["conversation"]["assignee_id"] == dana
        assert update["actor"] == {"kind": "system", "id": "auto_assign"}
        # the shopper's view carries no assignee
        for frame in await shopper.quiet(0.3):
            assert "assignee_id" not in frame.get("conversation", {})
    finally:
        runner_stop.set()
        await asyncio.gather(runner, return_exceptions=True)
        for c in h.clients:
            await c.close()
        await stop_gateway(gateway)
    # The stream entry maps to conversation.assigned, and the dispatcher enqueues it.
    [(entry_id, fields, _)] = await assignment_updates(redis_client, wf_config, tenant.org, conv)
    shard = keys.shard_of(tenant.org, wf_config.engine.shards)
    events = events_from_entry(shard, entry_id.decode(), fields)
    assert [e.type for e in events] == ["conversation.assigned"]
    assert events[0].payload["data"]["conversation"]["assignee_id"] == dana
    while await dispatcher.step(block_ms=100):
        pass
    async with scoped(db, org_id=tenant.org) as conn:
        rows = await conn.fetch("SELECT event, payload FROM webhook_deliveries WHERE org_id = $1", tenant.org)
    assert [(r["event"], r["payload"]["data"]["conversation"]["id"], r["payload"]["data"]["conversation"]["assignee_id"])
            for r in rows] == [("conversation.assigned", conv, dana)]


async def test_an_entry_that_fails_for_good_is_skipped_and_the_shard_goes_on(make_assigner, engine, presence, db,
                                                                             tenant, wf_config, caplog):
    await set_org(db, tenant.org, assignment_strategy="round_robin")
    await online(db, presence, tenant.org, *tenant.agents)
    assigner = await make_assigner()
    conv = await start(engine, tenant, 0, "secret words of the shopper")
    await until_idle(assigner)
    stream = keys.stream(keys.shard_of(tenant.org, wf_config.engine.shards))
    # A malformed copy of a first message (a contact id that is no UUID): PostgreSQL refuses it.
    poisoned = {b"t": b"m", b"s": b"1", b"o": tenant.org.encode(), b"c": str(uuid.uuid4()).encode(),
                b"k": b"not-a-uuid", b"a": tenant.app.encode(), b"h": b"widget",
                b"f": orjson.dumps({"message": {"type": "incoming", "body": "secret words of the shopper"}})}
    await assigner.handle([(stream, b"0-1", poisoned)])
    assert "secret words" not in caplog.text and "left unassigned" in caplog.text
    after = await start(engine, tenant, 1)
    await until_idle(assigner)
    assert await assignee(engine, tenant, conv) is not None and await assignee(engine, tenant, after) is not None


async def test_the_loop_recreates_a_consumer_group_redis_lost(make_assigner, engine, presence, db, tenant,
                                                              redis_client):
    await set_org(db, tenant.org, assignment_strategy="round_robin")
    await online(db, presence, tenant.org, *tenant.agents)
    assigner = await make_assigner()
    for stream in assigner.streams:                     # Redis restarted without its data, say
        await redis_client.xgroup_destroy(stream, assigner.group)
    stop = asyncio.Event()
    runner = asyncio.get_running_loop().create_task(run_assigner(assigner, stop))
    try:
        for _ in range(600):                            # until the group exists again
            groups = await redis_client.xinfo_groups(assigner.streams[0])
            if any(g["name"].decode() == assigner.group for g in groups):
                break
            await asyncio.sleep(0.05)
        conv = await start(engine, tenant, 0)
        for _ in range(600):                            # generous: CI shares two cores
            if await assignee(engine, tenant, conv):
                break
            await asyncio.sleep(0.05)
        assert await assignee(engine, tenant, conv) in tenant.agents
    finally:
        stop.set()
        await runner
