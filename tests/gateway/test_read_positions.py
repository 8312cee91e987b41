"""Members' read positions stored from `read` frames (migrations 0602 and 0603, Gateway.on_read):
real gateway, Redis and PostgreSQL; PostgreSQL cut away through a TCP proxy for the fault case;
the retry of a read of a conversation PostgreSQL does not have yet (ReadRetries) on its own and
through a real gateway."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest

from convot.db import scoped
from engine.worker import Worker
from gateway.server import ReadRetries
from tests.engine.seed import seed_tenant
from tests.gateway.conftest import running_gateway
from tests.gateway.proxy import CuttableProxy


async def persisted_conversation(owner_db, tenant, contact: int = 0, last_seq: int = 5) -> str:
    """A conversation PostgreSQL already has (the gateway hydrates its Redis meta from it)."""
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", tenant.org)
        conv = await owner_db.fetchval(
            "INSERT INTO conversations (org_id, app_id, contact_id, last_seq) VALUES ($1, $2, $3, $4) RETURNING id",
            uuid.UUID(tenant.org), uuid.UUID(tenant.app), uuid.UUID(tenant.contacts[contact]), last_seq)
    return str(conv)


async def positions(owner_db, org: str) -> dict[tuple[str, str], int]:
    """{(user, conversation): seq} of an organisation, read as the table owner."""
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", org)
        rows = await owner_db.fetch("SELECT user_id, conversation_id, seq FROM read_positions WHERE org_id = $1",
                                    uuid.UUID(org))
    return {(str(r["user_id"]), str(r["conversation_id"])): r["seq"] for r in rows}


async def wait_position(owner_db, org: str, user: str, conv: str, seq: int, timeout: float = 5.0) -> None:
    """Until the stored position of (user, conv) is ``seq`` (the store runs in the background)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = (await positions(owner_db, org)).get((user, conv))
        if got == seq:
            return
        if loop.time() > deadline:
            raise AssertionError(f"stored position {got}, expected {seq}")
        await asyncio.sleep(0.02)


async def test_a_members_read_is_stored_and_never_lowered(gw, tenant, owner_db):
    conv, barrier = await persisted_conversation(owner_db, tenant, 0), await persisted_conversation(owner_db, tenant, 1)
    agent, me = await gw.member(tenant, tenant.agents[0]), tenant.agents[0]
    await agent.send(type="read", conversation_id=conv, seq=4)
    await wait_position(owner_db, tenant.org, me, conv, 4)
    # Several reads in one burst: the highest wins, whatever the order.
    for seq in (2, 5, 3):
        await agent.send(type="read", conversation_id=conv, seq=seq)
    await wait_position(owner_db, tenant.org, me, conv, 5)
    # A lower position later does not lower it.  The barrier read on another conversation comes
    # after it on the same socket, so once the barrier is stored the lower read has been handled.
    await agent.send(type="read", conversation_id=conv, seq=1)
    await agent.send(type="read", conversation_id=barrier, seq=2)
    await wait_position(owner_db, tenant.org, me, barrier, 2)
    assert (await positions(owner_db, tenant.org))[(me, conv)] == 5
    # Another member's position is their own.
    other = await gw.member(tenant, tenant.agents[1])
    await other.send(type="read", conversation_id=conv, seq=1)
    await wait_position(owner_db, tenant.org, tenant.agents[1], conv, 1)
    assert (await positions(owner_db, tenant.org))[(me, conv)] == 5
    assert not [f for f in agent.frames + other.frames if f["type"] == "error"]


async def test_a_shoppers_read_stores_nothing(gw, tenant, owner_db):
    conv, barrier = await persisted_conversation(owner_db, tenant, 0), await persisted_conversation(owner_db, tenant, 1)
    agent = await gw.member(tenant, tenant.agents[0])
    shopper = await gw.shopper(tenant, 0)
    await shopper.send(type="read", conversation_id=conv, seq=3)
    receipt = await agent.expect("read", conversation_id=conv)
    assert receipt["reader"] == {"kind": "contact", "id": tenant.contacts[0]}
    # The shopper's read was handled (its receipt arrived) before this one was sent.
    await agent.send(type="read", conversation_id=barrier, seq=1)
    await wait_position(owner_db, tenant.org, tenant.agents[0], barrier, 1)
    assert await positions(owner_db, tenant.org) == {(tenant.agents[0], barrier): 1}


async def test_a_read_of_another_organisations_conversation_is_refused_and_stores_nothing(gw, tenant, owner_db):
    conv = await persisted_conversation(owner_db, tenant, 0)
    other = await seed_tenant(owner_db)
    own = await persisted_conversation(owner_db, other, 0)
    outsider = await gw.member(other, other.agents[0])
    insider = await gw.member(tenant, tenant.agents[0])
    await outsider.send(type="read", conversation_id=conv, seq=5, ref="r")
    err = await outsider.expect("error")
    assert err["code"] == "not_found" and err["ref"] == "r"
    await outsider.send(type="read", conversation_id=own, seq=1)
    await wait_position(owner_db, other.org, other.agents[0], own, 1)
    assert await positions(owner_db, other.org) == {(other.agents[0], own): 1}
    assert await positions(owner_db, tenant.org) == {}
    assert all(f["type"] != "read" for f in insider.frames + await insider.quiet(0.2))


async def test_positions_go_with_their_conversation_and_their_member(db, owner_db):
    tenant = await seed_tenant(owner_db)
    conv, kept = await persisted_conversation(owner_db, tenant, 0), await persisted_conversation(owner_db, tenant, 1)
    org = uuid.UUID(tenant.org)
    batch = [{"org": tenant.org, "member": m, "conversation": c, "seq": 3}
             for m in (tenant.agents[0], tenant.agents[1]) for c in (conv, kept)]
    async with db.acquire() as conn:            # the services' role, as the gateway calls it
        assert await conn.fetchval("SELECT convot_store_read_positions($1::jsonb)", batch) == []
        # a member of no such organisation: skipped for good; a conversation PostgreSQL does not
        # have (yet): skipped and handed back (its index) to be submitted again later
        assert await conn.fetchval("SELECT convot_store_read_positions($1::jsonb)", [
            {"org": tenant.org, "member": str(uuid.uuid4()), "conversation": conv, "seq": 9},
            {"org": tenant.org, "member": tenant.agents[0], "conversation": str(uuid.uuid4()), "seq": 9},
            {"org": tenant.org, "member": tenant.agents[0], "conversation": kept, "seq": 4}]) == [1]
    assert (await positions(owner_db, tenant.org))[(tenant.agents[0], kept)] == 4
    async with scoped(db, org_id=org) as conn:
        await conn.execute("DELETE FROM conversations WHERE org_id = $1 AND id = $2", org, uuid.UUID(conv))
        await conn.execute("DELETE FROM members WHERE org_id = $1 AND user_id = $2", org, uuid.UUID(tenant.agents[1]))
    assert await positions(owner_db, tenant.org) == {(tenant.agents[0], kept): 4}


def test_retries_of_a_missing_conversation_back_off_and_give_up():
    retries, key = ReadRetries(first=0.5, give_up=30.0, capacity=10), ("o", "m", "c")
    assert retries.missed(key, 3, now=100.0) and retries.next_due() == 100.5
    assert retries.due(100.4) == []
    assert retries.due(100.5) == [("o", "m", "c", 3)]
    assert retries.due(100.6) == [] and retries.next_due() is None     # in flight: not submitted twice
    # each miss doubles the delay; the last attempt is 30 s after the first miss, then given up
    attempts, now = [100.5], 100.5
    while retries.missed(key, 3, now):
        now = retries.next_due()
        attempts.append(now)
        assert retries.due(now) == [("o", "m", "c", 3)]
    assert attempts == [100.5, 101.5, 103.5, 107.5, 115.5, 130.0]
    assert len(retries) == 0 and retries.next_due() is None


def test_retries_keep_the_highest_position_and_a_bounded_number():
    retries = ReadRetries(first=0.5, give_up=30.0, capacity=2)
    assert retries.missed(("o", "m", "a"), 5, now=0.0)
    assert retries.highest(("o", "m", "a"), 2) == 5 and retries.highest(("o", "m", "a"), 7) == 7
    assert retries.highest(("o", "m", "other"), 1) == 1
    retries.missed(("o", "m", "a"), 2, now=0.5)           # a lower seq later does not lower the held one
    assert retries.due(10.0) == [("o", "m", "a", 5)]
    assert retries.missed(("o", "m", "b"), 1, now=0.0)
    assert not retries.missed(("o", "m", "c"), 1, now=0.0), "full: the third is dropped"
    assert retries.missed(("o", "m", "b"), 2, now=0.5), "one already held is still retried when full"
    retries.settled(("o", "m", "a"))
    assert retries.missed(("o", "m", "c"), 1, now=1.0) and len(retries) == 2


async def first_read_of_a_new_conversation(gw, tenant, owner_db, seq: int):
    """A shopper opens a conversation (Redis only: no engine worker runs here); an agent reads
    it at ``seq``, then reads a persisted barrier conversation on the same socket.  Once the
    barrier is stored, the first read has been tried: (agent socket, conversation id)."""
    shopper = await gw.shopper(tenant, 0)
    await shopper.send(type="send", client_msg_id="s1", body="hello, is anyone there?")
    conv = (await shopper.expect("ack"))["conversation_id"]
    barrier = await persisted_conversation(owner_db, tenant, 1)
    agent = await gw.member(tenant, tenant.agents[0])
    await agent.send(type="read", conversation_id=conv, seq=seq)
    await agent.send(type="read", conversation_id=barrier, seq=1)
    await wait_position(owner_db, tenant.org, tenant.agents[0], barrier, 1)
    assert (tenant.agents[0], conv) not in await positions(owner_db, tenant.org)
    return agent, conv


async def test_the_first_read_of_a_new_conversation_is_stored_once_the_worker_persists_it(
        gw, tenant, owner_db, config, redis_client, db):
    agent, conv = await first_read_of_a_new_conversation(gw, tenant, owner_db, 1)
    worker = Worker(config, redis=redis_client, pool=db, consumer=f"t-{uuid.uuid4().hex[:6]}")
    await worker.setup()
    while await worker.step():
        pass
    # no other read is sent: the gateway's retry stores it (within its ~30 s of retries)
    await wait_position(owner_db, tenant.org, tenant.agents[0], conv, 1, timeout=35.0)
    assert not [f for f in agent.frames if f["type"] == "error"]


async def test_a_retried_read_never_lowers_a_position_stored_meanwhile(gw, tenant, owner_db):
    agent, conv = await first_read_of_a_new_conversation(gw, tenant, owner_db, 2)
    stored_before = _counted("stored")
    # The conversation's row and a higher position (as another gateway would have stored from a
    # later read) appear together, so the retry of seq 2 necessarily comes after both.
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", tenant.org)
        await owner_db.execute(
            "INSERT INTO conversations (id, org_id, app_id, contact_id, last_seq) VALUES ($1, $2, $3, $4, 1)",
            uuid.UUID(conv), uuid.UUID(tenant.org), uuid.UUID(tenant.app), uuid.UUID(tenant.contacts[0]))
        await owner_db.execute(
            "INSERT INTO read_positions (org_id, user_id, conversation_id, seq) VALUES ($1, $2, $3, 4)",
            uuid.UUID(tenant.org), uuid.UUID(tenant.agents[0]), uuid.UUID(conv))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 35.0
    while _counted("stored") < stored_before + 1:              # the retry went through
        assert loop.time() < deadline, "the held read was never submitted again"
        await asyncio.sleep(0.05)
    assert (await positions(owner_db, tenant.org))[(tenant.agents[0], conv)] == 4


@pytest.fixture
async def cut_pg_gateway(config, servers):
    """A gateway whose PostgreSQL connections go through a proxy the test can cut."""
    pg_port = int(servers.database_url.rsplit(":", 1)[1].split("/")[0])
    proxy = CuttableProxy(pg_port)
    await proxy.start()
    cfg = config.replace(database={"url": servers.database_url.replace(f":{pg_port}/", f":{proxy.port}/")})
    try:
        async with running_gateway(cfg) as h:
            yield h, proxy
    finally:
        await proxy.close()


def _counted(outcome: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("convot_gateway_read_positions_total", {"outcome": outcome}) or 0.0


async def test_receipts_are_delivered_while_positions_cannot_be_stored(cut_pg_gateway, tenant, owner_db, caplog):
    gw, proxy = cut_pg_gateway
    conv = await persisted_conversation(owner_db, tenant, 0)
    reader, teammate = await gw.member(tenant, tenant.agents[0]), await gw.member(tenant, tenant.agents[1])
    shopper = await gw.shopper(tenant, 0)
    await reader.send(type="read", conversation_id=conv, seq=1)
    await wait_position(owner_db, tenant.org, tenant.agents[0], conv, 1)

    dropped_before = _counted("dropped")
    await proxy.cut()                               # PostgreSQL "down" for the gateway
    with caplog.at_level(logging.WARNING, logger="convot.gateway"):
        await reader.send(type="read", conversation_id=conv, seq=4)
        for other in (teammate, shopper):
            receipt = await other.expect("read", conversation_id=conv, seq=4)
            assert receipt["reader"] == {"kind": "member", "id": tenant.agents[0]}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not [r for r in caplog.records if r.getMessage().startswith("read positions: not stored")]:
            assert loop.time() < deadline, "no warning about the failed store"
            await asyncio.sleep(0.02)
    warning = next(r for r in caplog.records if r.getMessage().startswith("read positions: not stored"))
    assert warning.levelno == logging.WARNING
    for secret in (tenant.org, tenant.agents[0], conv):
        assert secret not in warning.getMessage()
    assert (await positions(owner_db, tenant.org))[(tenant.agents[0], conv)] == 1
    assert _counted("dropped") == dropped_before + 1, "the metric counts the dropped position"
    # The socket is fine and so is the gateway.
    await reader.send(type="ping", ref="p")
    assert (await reader.expect("pong"))["ref"] == "p"

    stored_before = _counted("stored")
    await proxy.start()                             # back: the next read is stored
    await reader.send(type="read", conversation_id=conv, seq=5)
    await wait_position(owner_db, tenant.org, tenant.agents[0], conv, 5)
    assert _counted("stored") >= stored_before + 1


async def test_a_held_read_gets_a_last_try_when_the_gateway_drains(config, db, owner_db, redis_client):
    """A position still waiting for its conversation when the gateway shuts down is tried once
    more in drain(): stored if the row is there by then, never left behind silently."""
    from convot.tokens import TokenVerifier
    from engine.client import EngineClient
    from gateway.server import Gateway

    tenant = await seed_tenant(owner_db)
    engine = EngineClient(config, pool=db)
    await engine.start()
    gateway = Gateway(config, redis=redis_client, pool=db, engine=engine, verifier=TokenVerifier(config))
    gateway.read_retries.first = 3600.0          # the regular retry would come far too late
    try:
        conv = str(uuid.uuid4())
        agent = tenant.agents[0]
        await gateway.read_positions.submit((tenant.org, agent, conv, 3))
        await gateway.read_positions.idle()
        assert len(gateway.read_retries) == 1 and (agent, conv) not in await positions(owner_db, tenant.org)
        async with owner_db.transaction():           # the worker persists the conversation meanwhile
            await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", tenant.org)
            await owner_db.execute(
                "INSERT INTO conversations (id, org_id, app_id, contact_id, last_seq) VALUES ($1, $2, $3, $4, 3)",
                uuid.UUID(conv), uuid.UUID(tenant.org), uuid.UUID(tenant.app), uuid.UUID(tenant.contacts[0]))
        await gateway.drain()
        assert (await positions(owner_db, tenant.org))[(agent, conv)] == 3
        assert len(gateway.read_retries) == 0
    finally:
        await engine.close()
