"""Property: with concurrent senders on two gateways, every participant sees the same total
order of a conversation, sequence numbers have no gaps, and nothing is lost or doubled."""

import asyncio

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from convot.tokens import TokenIssuer
from tests.engine.seed import seed_tenant
from tests.gateway.conftest import start_gateway, stop_gateway

# Per sender: how many messages it sends and which gateway it uses.
senders = st.lists(st.tuples(st.integers(min_value=1, max_value=12), st.integers(min_value=0, max_value=1)),
                   min_size=2, max_size=5)


async def _open(port: int, token: str):
    ws = await connect(f"ws://127.0.0.1:{port}/", compression=None)
    await ws.send(orjson.dumps({"type": "authenticate", "token": token}).decode())
    assert orjson.loads(await ws.recv())["type"] == "ready"
    return ws


async def _collect(ws, conv: str, want: int, out: list) -> None:
    while len(out) < want:
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame["type"] == "message" and frame["message"]["conversation_id"] == conv:
            out.append(frame["message"])


@pytest.fixture
async def two_gateways(config):
    from convot.embedded import free_port

    cfg_a = config.replace(gateway={"rate_limit_per_second": 1000.0, "rate_limit_burst": 1000})
    cfg_b = cfg_a.replace(gateway={"port": free_port(), "metrics_port": free_port()})
    gw_a, gw_b = await start_gateway(cfg_a), await start_gateway(cfg_b)
    yield [cfg_a.gateway.port, cfg_b.gateway.port]
    await stop_gateway(gw_a)
    await stop_gateway(gw_b)


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(plan=senders)
async def test_concurrent_senders_one_order_for_everyone(config, owner_db, two_gateways, plan):
    tenant = await seed_tenant(owner_db, agents=len(plan), contacts=1)
    ports = two_gateways
    issuer = TokenIssuer(config)
    sockets = []
    try:
        shopper = await _open(ports[0], issuer.widget_token(tenant.org, tenant.contacts[0], tenant.app)[0])
        sockets.append(shopper)
        await shopper.send(orjson.dumps({"type": "send", "client_msg_id": "start", "body": "start"}).decode())
        conv = None
        while conv is None:
            frame = orjson.loads(await shopper.recv())
            if frame["type"] == "ack":
                conv = frame["conversation_id"]
        agents = []
        for (count, gateway), user in zip(plan, tenant.agents):
            ws = await _open(ports[gateway], issuer.member_token(tenant.org, user, "agent", 0)[0])
            sockets.append(ws)
            agents.append((ws, count))
        watcher = await _open(ports[1], issuer.member_token(tenant.org, tenant.owner, "owner", 0)[0])
        sockets.append(watcher)
        total = sum(count for count, _ in plan)
        seen: list[list] = [[] for _ in range(len(agents) + 1)]
        collectors = [asyncio.get_running_loop().create_task(_collect(watcher, conv, total, seen[0]))]

        async def send_all(ws, count, index):
            for i in range(count):
                await ws.send(orjson.dumps({"type": "send", "conversation_id": conv, "client_msg_id": f"a{index}-{i}",
                                            "body": f"s{index}-{i}"}).decode())

        for index, (ws, count) in enumerate(agents):
            collectors.append(asyncio.get_running_loop().create_task(_collect(ws, conv, total, seen[index + 1])))
        await asyncio.gather(*(send_all(ws, count, i) for i, (ws, count) in enumerate(agents)))
        done, pending = await asyncio.wait(collectors, timeout=10)
        assert not pending, ("collectors stuck", [len(x) for x in seen], total, plan)
        orders = [[m["id"] for m in s] for s in seen]
        assert all(o == orders[0] for o in orders), "participants disagree on the order"
        assert [m["seq"] for m in seen[0]] == list(range(2, total + 2)), "gap or duplicate in sequence numbers"
        # Each sender's own messages keep the order it sent them in.
        for index, (_, count) in enumerate(agents):
            mine = [m["body"] for m in seen[0] if m["body"].startswith(f"s{index}-")]
            assert mine == [f"s{index}-{i}" for i in range(count)], (mine, [m["body"] for m in seen[0]])
    finally:
        for ws in sockets:
            await ws.close()
