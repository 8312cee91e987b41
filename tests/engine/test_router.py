"""ShardRouter: sends of one loop turn share one Redis round trip; order per sender holds."""

import asyncio

import pytest

from engine.client import EngineClient
from engine.errors import EngineError
from tests.engine.seed import seed_tenant


async def _evalsha_calls(redis_client) -> int:
    stats = await redis_client.info("commandstats")
    return stats.get("cmdstat_evalsha", {}).get("calls", 0)


async def test_sends_of_one_turn_are_one_script_call(config, db, owner_db, redis_client):
    tenant = await seed_tenant(owner_db)
    engine = EngineClient(config, pool=db)
    await engine.start()
    try:
        conv = (await engine.start_conversation(tenant.org, tenant.contacts[0], tenant.app, body="hi")).conversation_id
        before = await _evalsha_calls(redis_client)
        futures = [engine.router.append(engine.send_message_nowait(
            tenant.org, conv, type="outgoing", author_kind="member", author_id=tenant.agents[0], body=f"b{i}"))
            for i in range(50)]
        acks = await asyncio.gather(*futures)
        assert await _evalsha_calls(redis_client) - before == 1, "50 sends of one turn -> one append.lua call"
        assert [a.seq for a in acks] == list(range(2, 52)), "sequence follows the order of the sends"
    finally:
        await engine.close()


async def test_closed_router_refuses(config, db):
    engine = EngineClient(config, pool=db)
    await engine.start()
    await engine.close()
    import uuid

    with pytest.raises(EngineError) as err:
        await engine.send_message(str(uuid.uuid4()), str(uuid.uuid4()), type="outgoing", author_kind="member",
                                  author_id=None, body="x")
    assert err.value.code == "unavailable"


async def test_redis_down_answers_unavailable(config, db):
    from convot.embedded import free_port

    cfg = config.replace(redis={"url": f"redis://127.0.0.1:{free_port()}/0"})
    engine = EngineClient(cfg, pool=db)
    import uuid

    with pytest.raises(EngineError) as err:
        await engine.send_message(str(uuid.uuid4()), str(uuid.uuid4()), type="outgoing", author_kind="member",
                                  author_id=None, body="x")
    assert err.value.code == "unavailable"
    await engine.close()


async def test_appends_survive_a_lost_script_cache(config, db, owner_db, redis_client):
    """After a Redis restart the scripts are gone (NOSCRIPT): they are loaded again."""
    tenant = await seed_tenant(owner_db)
    engine = EngineClient(config, pool=db)
    await engine.start()
    try:
        conv = (await engine.start_conversation(tenant.org, tenant.contacts[0], tenant.app, body="hi")).conversation_id
        await redis_client.script_flush()
        ack = await engine.send_message(tenant.org, conv, type="outgoing", author_kind="member",
                                        author_id=tenant.agents[0], body="after flush")
        assert ack.seq == 2
    finally:
        await engine.close()
