"""Outgoing webhooks: event mapping from real stream entries, signatures, retry schedule,
endpoint policy, and the dispatcher + delivery loop against real Redis, PostgreSQL and a real
HTTP receiver that verifies every signature."""

import asyncio
import datetime as dt
import time
import uuid

import orjson
import pytest
from aiohttp import web

from convot.crypto import Encryptor, row_aad
from engine import keys
from engine import webhooks as wh
from engine.client import EngineClient
from tests.engine.seed import seed_tenant


# ---- helpers -------------------------------------------------------------------------------

class Receiver:
    """A developer's endpoint: verifies each signature, answers from a script of statuses."""

    def __init__(self, secret: str, statuses=(), hang: bool = False) -> None:
        self.secret = secret
        self.statuses = list(statuses)
        self.hang = hang
        self.received: list[dict] = []
        self.bad_signatures = 0
        self.hanging = 0
        self.got = asyncio.Event()
        self._release = asyncio.Event()
        self.runner = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not wh.verify_signature(self.secret, request.headers.get(wh.SIGNATURE_HEADER, ""), body,
                                   now=time.time()):
            self.bad_signatures += 1
            return web.Response(status=400)
        if self.hang:
            self.hanging += 1
            self.got.set()
            await self._release.wait()
            return web.Response(status=200)
        status = self.statuses.pop(0) if self.statuses else 200
        event = orjson.loads(body)
        self.received.append({"status": status, "event": event, "headers": dict(request.headers)})
        self.got.set()
        return web.Response(status=status)

    async def start(self) -> "Receiver":
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def stop(self) -> None:
        self._release.set()
        await self.runner.cleanup()

    def delivered(self, event_type: str) -> list[dict]:
        return [r["event"] for r in self.received if r["status"] < 300 and r["event"]["type"] == event_type]


async def add_webhook(owner_db, config, org, url, events=wh.EVENTS, enabled=True) -> tuple[uuid.UUID, str]:
    secret = wh.new_secret()
    hook_id = uuid.uuid4()
    blob = Encryptor.from_config(config).encrypt(secret.encode(), row_aad("webhooks", "secret_enc", org, hook_id))
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", str(org))
        await owner_db.execute(
            "INSERT INTO webhooks (id, org_id, url, secret_enc, events, enabled) VALUES ($1, $2, $3, $4, $5, $6)",
            hook_id, uuid.UUID(str(org)), url, blob, list(events), enabled)
    return hook_id, secret


async def deliveries(owner_db, org, hook_id=None) -> list:
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", str(org))
        return await owner_db.fetch(
            "SELECT * FROM webhook_deliveries WHERE org_id = $1 AND ($2::uuid IS NULL OR webhook_id = $2) "
            "ORDER BY created_at", uuid.UUID(str(org)), hook_id)


async def until(predicate, what: str, timeout: float = 20.0):
    """Poll a condition (functional wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def engine(config, db):
    client = EngineClient(config, pool=db)
    await client.start()
    yield client
    await client.close()


@pytest.fixture
async def tenant(owner_db):
    return await seed_tenant(owner_db)


class Running:
    """Dispatcher + delivery loop of one test, on its own consumer group."""

    def __init__(self, config, db, redis_client):
        self.stop = asyncio.Event()
        self.wake = asyncio.Event()
        self.dispatcher = wh.StreamDispatcher(config, db, redis_client, wake=self.wake,
                                              group="webhooks-test-" + uuid.uuid4().hex[:8])
        self.delivery = wh.DeliveryLoop(config, db, wake=self.wake)
        self.tasks = []

    async def __aenter__(self):
        await self.dispatcher.setup()
        await self.delivery.start()
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(wh.run_dispatcher(self.dispatcher, self.stop)),
                      loop.create_task(self.delivery.run(self.stop))]
        return self

    async def __aexit__(self, *exc):
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.delivery.close()
        for stream in self.dispatcher.streams:
            await self.dispatcher.redis.xgroup_destroy(stream, self.dispatcher.group)


def fast(servers, **webhooks):
    return servers.config(webhooks={"retry_base": 0.05, "retry_max": 0.2, "poll_interval": 0.05,
                                    "timeout": 2.0, **webhooks})


# ---- pure: mapping real stream entries -------------------------------------------------------

async def _entries_after(redis_client, config, org, start_id):
    shard = keys.shard_of(org, config.engine.shards)
    return shard, [(eid.decode(), f) for eid, f in await redis_client.xrange(keys.stream(shard), min=start_id)
                   if f[b"o"].decode() == org]


async def test_stream_entries_map_to_webhook_events(engine, tenant, redis_client, config):
    shard = keys.shard_of(tenant.org, config.engine.shards)
    start = (await redis_client.xinfo_stream(keys.stream(shard)))["last-generated-id"] \
        if await redis_client.exists(keys.stream(shard)) else b"0-0"
    start = start.decode() if isinstance(start, bytes) else start
    contact, agent = tenant.contacts[0], tenant.agents[0]
    ack = await engine.start_conversation(tenant.org, contact, tenant.app, body="Where is my order?")
    conv = ack.conversation_id
    await engine.send_message(tenant.org, conv, type="outgoing", author_kind="member", author_id=agent, body="On its way")
    await engine.send_message(tenant.org, conv, type="note", author_kind="member", author_id=agent, body="vip")
    await engine.send_message(tenant.org, conv, type="activity", author_kind="system", author_id=None, body="x")
    await engine.update_conversation(tenant.org, conv, assignee_id=agent, actor=("member", agent))
    await engine.update_conversation(tenant.org, conv, status="pending", actor=("member", agent))
    await engine.update_conversation(tenant.org, conv, status="resolved", actor=("member", agent))
    await engine.update_conversation(tenant.org, conv, add_tags=["vip"], actor=("member", agent))
    await engine.send_message(tenant.org, conv, type="incoming", author_kind="contact", author_id=contact,
                              body="one more thing", contact_id=contact)  # reopens
    await engine.delete_message(tenant.org, conv, 2, actor=("member", agent))

    shard, entries = await _entries_after(redis_client, config, tenant.org, start)
    events = [e for eid, f in entries if eid != start for e in wh.events_from_entry(shard, eid, f)]
    types = [e.type for e in events]
    assert types == ["conversation.created", "message.received", "message.sent", "message.sent",
                     "conversation.assigned", "conversation.resolved", "message.received",
                     "conversation.reopened", "message.deleted"]
    received = events[1].payload
    assert received["type"] == "message.received" and received["org_id"] == tenant.org
    assert received["data"]["message"]["body"] == "Where is my order?"
    assert received["data"]["conversation"] == {"id": conv, "contact_id": contact, "app_id": tenant.app,
                                                "channel": "widget"}
    assert events[3].payload["data"]["message"]["type"] == "note"
    assigned = events[4].payload["data"]
    assert assigned["conversation"]["assignee_id"] == agent and assigned["actor"] == {"kind": "member", "id": agent}
    deleted = events[-1].payload["data"]["message"]
    assert deleted["seq"] == 2 and "body" not in deleted and deleted["deleted_by"] == agent
    assert all(e.contact_id == contact for e in events)
    # event ids are stable per entry (re-reading enqueues nothing new) and distinct
    again = [e.id for eid, f in entries if eid != start for e in wh.events_from_entry(shard, eid, f)]
    assert again == [e.id for e in events] and len(set(again)) == len(again)


def test_entries_without_fields_or_garbage_map_to_nothing():
    assert wh.events_from_entry(0, "1-0", {}) == []
    assert wh.events_from_entry(0, "1-0", {b"t": b"m", b"o": b"x", b"f": b"{not json"}) == []
    assert wh.events_from_entry(0, "1-0", {b"t": b"z", b"o": b"x", b"f": b"{}"}) == []


# ---- pure: signatures, schedule, endpoint policy ----------------------------------------------

def test_signature_round_trip_and_refusals():
    secret, body, now = "whsec_abc", b'{"id":"ev_1"}', 1_700_000_000
    header = wh.sign(secret, now, body)
    assert header.startswith(f"t={now},v1=") and len(header.split("v1=")[1]) == 64
    assert wh.verify_signature(secret, header, body, now=now + 10)
    assert not wh.verify_signature(secret, header, body + b" ", now=now)          # body changed
    assert not wh.verify_signature("whsec_other", header, body, now=now)          # other secret
    assert not wh.verify_signature(secret, header, body, now=now + 301)           # replayed later
    assert not wh.verify_signature(secret, header.replace(f"t={now}", f"t={now + 1}"), body, now=now)
    assert not wh.verify_signature(secret, "garbage", body, now=now)
    assert not wh.verify_signature(secret, f"t={now},v1=" + "é" * 64, body, now=now)
    # a receiver accepts any listed v1 (secret rotation overlap)
    other = wh.sign("whsec_old", now, body).split("v1=")[1]
    assert wh.verify_signature(secret, header + ",v1=" + other, body, now=now)


def test_retry_schedule_doubles_is_capped_and_gives_up_after_a_day():
    assert wh.retry_delay(1, 30, 3600, 1.0) == 30 and wh.retry_delay(1, 30, 3600, 0.0) == 15
    assert [wh.retry_delay(n, 30, 3600, 1.0) for n in range(1, 6)] == [30, 60, 120, 240, 480]
    assert wh.retry_delay(50, 30, 3600, 1.0) == 3600
    created = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    soon = wh.after_failure(1, created, created + dt.timedelta(seconds=5), base=30, cap=3600, give_up_after=86400,
                            rand=1.0)
    assert soon == created + dt.timedelta(seconds=35)
    late = created + dt.timedelta(hours=23, minutes=59)
    assert wh.after_failure(20, created, late, base=30, cap=3600, give_up_after=86400, rand=0.5) is None


@pytest.mark.parametrize("url,development,ok", [
    ("https://hooks.example.com/convot", False, True),
    ("http://hooks.example.com/convot", False, False),
    ("http://hooks.example.com/convot", True, True),
    ("https://127.0.0.1/hook", False, False),
    ("https://10.1.2.3/hook", False, False),
    ("https://169.254.169.254/latest/meta-data", False, False),
    ("https://[::1]/hook", False, False),
    ("https://[::ffff:127.0.0.1]/hook", False, False),
    ("https://localhost/hook", False, False),
    ("https://metadata.google.internal/", False, False),
    ("https://user:pw@hooks.example.com/", False, False),
    ("ftp://hooks.example.com/", True, False),
    ("https://hooks.example.com/a b", False, False),
    ("https://" + "a" * 2100 + ".com/", False, False),
    ("https://8.8.8.8/hook", False, True),
])
def test_endpoint_url_policy(url, development, ok):
    assert (wh.url_problem(url, development) is None) is ok


def test_only_public_addresses_outside_development():
    assert wh.address_allowed("93.184.216.34", False)
    for private in ("127.0.0.1", "10.0.0.1", "192.168.1.1", "172.16.0.1", "169.254.169.254", "::1", "fc00::1",
                    "0.0.0.0", "224.0.0.1", "::ffff:10.0.0.1", "not-an-ip"):
        assert not wh.address_allowed(private, False), private
    assert wh.address_allowed("127.0.0.1", True)


async def test_public_resolver_refuses_names_that_resolve_inside():
    resolver = wh.PublicResolver(development=False)
    try:
        with pytest.raises(OSError):
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()


# ---- integration: dispatcher + delivery loop ---------------------------------------------------

async def test_events_reach_the_endpoint_signed_and_exactly_once_each(servers, db, redis_client, owner_db, engine,
                                                                      tenant):
    config = fast(servers)
    receiver = await Receiver("").start()
    hook, secret = await add_webhook(owner_db, config, tenant.org, receiver.url,
                                     events=["message.received", "message.sent", "conversation.resolved"])
    receiver.secret = secret
    try:
        async with Running(config, db, redis_client):
            contact, agent = tenant.contacts[0], tenant.agents[0]
            conv = (await engine.start_conversation(tenant.org, contact, tenant.app, body="Hello")).conversation_id
            await engine.send_message(tenant.org, conv, type="outgoing", author_kind="member", author_id=agent,
                                      body="Hi there")
            await engine.update_conversation(tenant.org, conv, status="resolved", actor=("member", agent))
            await engine.update_conversation(tenant.org, conv, assignee_id=agent, actor=("member", agent))

            async def three():
                return len(receiver.received) >= 3 and all(
                    d["status"] == "delivered" for d in await deliveries(owner_db, tenant.org, hook))
            await until(three, "three deliveries")
        assert receiver.bad_signatures == 0
        types = sorted(r["event"]["type"] for r in receiver.received)
        assert types == ["conversation.resolved", "message.received", "message.sent"]  # not subscribed: assigned
        first = receiver.delivered("message.received")[0]
        assert first["data"]["message"]["body"] == "Hello" and first["data"]["conversation"]["id"] == conv
        headers = receiver.received[0]["headers"]
        assert headers["Content-Type"] == "application/json" and headers["Convot-Event-Id"].startswith("ev_")
        rows = await deliveries(owner_db, tenant.org, hook)
        assert len(rows) == 3 and all(r["attempts"] == 1 and r["last_status"] == 200 for r in rows)
    finally:
        await receiver.stop()


async def test_failing_endpoint_is_retried_then_gets_the_event_exactly_once_more(servers, db, redis_client, owner_db,
                                                                                 engine, tenant):
    config = fast(servers)
    receiver = await Receiver("", statuses=[500, 503, 500]).start()
    hook, receiver.secret = await add_webhook(owner_db, config, tenant.org, receiver.url, events=["message.received"])
    try:
        async with Running(config, db, redis_client) as running:
            await engine.start_conversation(tenant.org, tenant.contacts[0], tenant.app, body="retry me")

            async def delivered():
                rows = await deliveries(owner_db, tenant.org, hook)
                return rows if rows and rows[0]["status"] == "delivered" else None
            rows = await until(delivered, "the fourth attempt to succeed")
            # keep the loops running a while longer: nothing more may arrive
            for _ in range(10):
                await running.delivery.poll()
                await asyncio.sleep(0.05)
        assert [r["status"] for r in receiver.received] == [500, 503, 500, 200]
        ids = {r["event"]["id"] for r in receiver.received}
        assert len(ids) == 1, "every attempt carries the same event id"
        assert [r["headers"]["Convot-Attempt"] for r in receiver.received] == ["1", "2", "3", "4"]
        assert len(rows) == 1 and rows[0]["attempts"] == 4 and rows[0]["last_status"] == 200
        assert receiver.bad_signatures == 0
    finally:
        await receiver.stop()


async def test_undeliverable_event_is_marked_failed_after_the_give_up_time(servers, db, redis_client, owner_db,
                                                                            engine, tenant):
    config = fast(servers, give_up_after=1)
    receiver = await Receiver("", statuses=[500] * 1000).start()
    hook, receiver.secret = await add_webhook(owner_db, config, tenant.org, receiver.url, events=["message.received"])
    try:
        async with Running(config, db, redis_client):
            await engine.start_conversation(tenant.org, tenant.contacts[0], tenant.app, body="nobody home")

            async def failed():
                rows = await deliveries(owner_db, tenant.org, hook)
                return rows if rows and rows[0]["status"] == "failed" else None
            rows = await until(failed, "the delivery to be given up")
        assert rows[0]["attempts"] >= 2 and rows[0]["last_status"] == 500 and rows[0]["last_error"] == "http_500"
        assert len(receiver.received) == rows[0]["attempts"]
    finally:
        await receiver.stop()


async def test_hanging_endpoint_delays_neither_chat_nor_other_endpoints(servers, db, redis_client, owner_db, engine,
                                                                         tenant):
    config = fast(servers, timeout=30.0, per_endpoint=2)
    stuck = await Receiver("", hang=True).start()
    healthy = await Receiver("").start()
    stuck_hook, stuck.secret = await add_webhook(owner_db, config, tenant.org, stuck.url,
                                                 events=["message.received"])
    good_hook, healthy.secret = await add_webhook(owner_db, config, tenant.org, healthy.url,
                                                  events=["message.received"])
    try:
        async with Running(config, db, redis_client) as running:
            contact = tenant.contacts[0]
            conv = (await engine.start_conversation(tenant.org, contact, tenant.app, body="m0")).conversation_id
            await asyncio.wait_for(stuck.got.wait(), 20)
            # the stuck endpoint now holds requests open; chat goes on and other endpoints are served
            acks = [await engine.send_message(tenant.org, conv, type="incoming", author_kind="contact",
                                              author_id=contact, body=f"m{i}", contact_id=contact)
                    for i in range(1, 6)]
            assert [a.seq for a in acks] == [2, 3, 4, 5, 6]

            async def six():
                return len(healthy.delivered("message.received")) == 6
            await until(six, "the healthy endpoint to get all six events")
            # the stuck endpoint fills its own slots, and never more
            await until(lambda: _async(running.delivery.inflight(stuck_hook) == config.webhooks.per_endpoint),
                        "the stuck endpoint's slots to fill")
            for _ in range(5):
                await running.delivery.poll()
                assert running.delivery.inflight(stuck_hook) == config.webhooks.per_endpoint
            await until(lambda: _async(stuck.hanging == config.webhooks.per_endpoint), "both slots to be held open")
        bodies = sorted(e["data"]["message"]["body"] for e in healthy.delivered("message.received"))
        assert bodies == [f"m{i}" for i in range(6)]
    finally:
        await stuck.stop()
        await healthy.stop()


async def test_disabled_endpoint_gets_nothing(servers, db, redis_client, owner_db, engine, tenant):
    config = fast(servers)
    receiver = await Receiver("").start()
    hook, receiver.secret = await add_webhook(owner_db, config, tenant.org, receiver.url, events=["message.received"],
                                              enabled=False)
    try:
        async with Running(config, db, redis_client) as running:
            await engine.start_conversation(tenant.org, tenant.contacts[0], tenant.app, body="hello?")
            await until(lambda: _drained(running), "the dispatcher to read the entry")
        assert receiver.received == [] and await deliveries(owner_db, tenant.org, hook) == []
    finally:
        await receiver.stop()


async def _drained(running) -> bool:
    pending = 0
    for stream in running.dispatcher.streams:
        info = await running.dispatcher.redis.xpending(stream, running.dispatcher.group)
        pending += info["pending"]
    groups = await running.dispatcher.redis.xinfo_groups(next(iter(running.dispatcher.streams)))
    return pending == 0 and any(g["name"].decode() == running.dispatcher.group for g in groups)


async def test_private_address_is_refused_outside_development_without_a_request(servers, db, owner_db, tenant):
    config = fast(servers, timeout=2.0).replace(admin_api={"development": False})
    receiver = await Receiver("").start()
    hook, receiver.secret = await add_webhook(owner_db, config, tenant.org, receiver.url.replace("http:", "https:"),
                                              events=["message.received"])
    event = wh.Event(tenant.org, "message.received", "ev_" + uuid.uuid4().hex, None,
                     wh.envelope(tenant.org, "message.received", "ev_x", "2026-01-01T00:00:00.000Z", {}))
    from convot.db import scoped
    async with scoped(db, org_id=tenant.org) as conn:
        assert await wh.enqueue(conn, tenant.org, [event]) == 1
    loop = wh.DeliveryLoop(config, db)
    await loop.start()
    try:
        await until(loop.poll, "the delivery to be claimed")
        await until(lambda: _async(loop.busy == 0), "the attempt to finish")
    finally:
        await loop.close()
        await receiver.stop()
    rows = await deliveries(owner_db, tenant.org, hook)
    assert rows[0]["status"] == "failed" and rows[0]["last_error"] == "url_refused"
    assert receiver.received == []


async def _async(value):
    return value


async def test_enqueue_is_idempotent_and_skips_erased_contacts(db, owner_db, config, tenant):
    hook, _ = await add_webhook(owner_db, config, tenant.org, "https://hooks.example.com/x")
    from convot.db import scoped
    ghost = str(uuid.uuid4())
    real = tenant.contacts[1]
    events = [wh.Event(tenant.org, "message.received", "ev_a", real, {"id": "ev_a"}),
              wh.Event(tenant.org, "message.received", "ev_b", ghost, {"id": "ev_b"}),
              wh.Event(str(uuid.uuid4()), "message.received", "ev_c", None, {"id": "ev_c"})]  # other org: ignored
    async with scoped(db, org_id=tenant.org) as conn:
        assert await wh.enqueue(conn, tenant.org, events) == 1
        assert await wh.enqueue(conn, tenant.org, events) == 0
    rows = await deliveries(owner_db, tenant.org, hook)
    assert [(r["event_id"], str(r["contact_id"])) for r in rows] == [("ev_a", real)]
    # the contact disappears: so do the deliveries about it
    async with scoped(db, org_id=tenant.org) as conn:
        await conn.execute("DELETE FROM contacts WHERE id = $1", uuid.UUID(real))
    assert await deliveries(owner_db, tenant.org, hook) == []


async def test_job_discovery_answers_organisation_ids_only(db, owner_db, config, tenant):
    hook, _ = await add_webhook(owner_db, config, tenant.org, "https://hooks.example.com/x")
    from convot.db import scoped
    async with scoped(db, org_id=tenant.org) as conn:
        await wh.enqueue(conn, tenant.org, [wh.test_event(tenant.org, hook)], webhook_id=hook)
    async with db.acquire() as conn:
        orgs = {str(r[0]) for r in await conn.fetch("SELECT convot_due_webhook_orgs(1000)")}
        assert tenant.org in orgs
        # the services' role still sees no delivery row without a scope, even after the call
        async with conn.transaction():
            await conn.fetch("SELECT convot_due_webhook_orgs(10)")
            assert await conn.fetchval("SELECT count(*) FROM webhook_deliveries") == 0
            assert await conn.fetchval("SELECT current_setting('convot.maintenance', true)") in (None, "")


async def test_subscriber_discovery_names_only_orgs_with_an_enabled_endpoint(db, owner_db, config, tenant):
    other, disabled_only, user = str(uuid.uuid4()), str(uuid.uuid4()), uuid.uuid4()   # other: no endpoint at all
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", disabled_only)
        await owner_db.execute("INSERT INTO users (id, email, password_hash) VALUES ($1, $2, 'x')", user,
                               f"{user}@example.com")
        await owner_db.execute("INSERT INTO organisations (id, name, super_owner_id) VALUES ($1, 'x', $2)",
                               uuid.UUID(disabled_only), user)
    await add_webhook(owner_db, config, tenant.org, "https://hooks.example.com/x")
    await add_webhook(owner_db, config, disabled_only, "https://hooks.example.com/y", enabled=False)
    async with db.acquire() as conn:
        got = {str(r[0]) for r in await conn.fetch("SELECT convot_webhook_subscribed_orgs($1::uuid[])",
                                                   [tenant.org, other, disabled_only])}
        assert got == {tenant.org}
        async with conn.transaction():
            await conn.fetch("SELECT convot_webhook_subscribed_orgs($1::uuid[])", [tenant.org])
            assert await conn.fetchval("SELECT count(*) FROM webhooks") == 0, "no rows without a scope"
            assert await conn.fetchval("SELECT current_setting('convot.maintenance', true)") in (None, "")


async def test_the_engine_worker_runs_dispatcher_and_delivery(servers, owner_db, engine, tenant):
    """`convot engine` (engine/worker.py serve) starts the webhook loops next to persistence."""
    from engine import worker

    config = fast(servers)
    receiver = await Receiver("").start()
    _, receiver.secret = await add_webhook(owner_db, config, tenant.org, receiver.url, events=["message.received"])
    task = asyncio.get_running_loop().create_task(worker.serve(config))
    stream = keys.stream(keys.shard_of(tenant.org, config.engine.shards))
    redis = engine.redis

    async def group_ready():
        assert not task.done(), task
        groups = await redis.xinfo_groups(stream) if await redis.exists(stream) else []
        return any(g["name"] == wh.GROUP.encode() for g in groups)
    try:
        await until(group_ready, "the worker's webhook group")
        conv = (await engine.start_conversation(tenant.org, tenant.contacts[0], tenant.app,
                                                body="through the worker")).conversation_id
        await asyncio.wait_for(receiver.got.wait(), 20)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await receiver.stop()
    event = receiver.delivered("message.received")[0]
    assert event["data"]["conversation"]["id"] == conv and receiver.bad_signatures == 0


async def test_the_dispatcher_creates_a_lost_group_again(config, db, other_db):
    from engine.client import create_redis

    cfg = config.replace(redis={"url": other_db(config.redis.url, 8)})
    redis = create_redis(cfg)
    dispatcher = wh.StreamDispatcher(cfg, db, redis)
    await dispatcher.setup()
    stream = next(iter(dispatcher.streams))
    for s in dispatcher.streams:
        await redis.xgroup_destroy(s, dispatcher.group)
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(wh.run_dispatcher(dispatcher, stop))
    try:
        async def group_back():
            return any(g["name"].decode() == dispatcher.group for g in await redis.xinfo_groups(stream))
        await until(group_back, "the webhooks group to be created again")
        assert not task.done(), "the dispatcher keeps running"
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await redis.flushdb()
        await redis.aclose()
