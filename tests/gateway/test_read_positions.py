"""Members' read positions stored from `read` frames (migration 0602, Gateway.on_read): real
gateway, Redis and PostgreSQL; PostgreSQL cut away through a TCP proxy for the fault case."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest

from convot.db import scoped
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
        assert await conn.fetchval("SELECT convot_store_read_positions($1::jsonb)", batch) == 4
        # a member of no such organisation, or a conversation PostgreSQL does not have: skipped
        assert await conn.fetchval("SELECT convot_store_read_positions($1::jsonb)", [
            {"org": tenant.org, "member": str(uuid.uuid4()), "conversation": conv, "seq": 9},
            {"org": tenant.org, "member": tenant.agents[0], "conversation": str(uuid.uuid4()), "seq": 9}]) == 0
    async with scoped(db, org_id=org) as conn:
        await conn.execute("DELETE FROM conversations WHERE org_id = $1 AND id = $2", org, uuid.UUID(conv))
        await conn.execute("DELETE FROM members WHERE org_id = $1 AND user_id = $2", org, uuid.UUID(tenant.agents[1]))
    assert await positions(owner_db, tenant.org) == {(tenant.agents[0], kept): 3}


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
