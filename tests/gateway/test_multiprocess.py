"""Several real gateway and worker processes (`python -m convot.cli gateway|engine`), killed
and cut off on purpose: every acknowledged message must end up stored exactly once and
delivered to every connected participant exactly once (after dedup by message id)."""

import asyncio
import uuid

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.stack import Services
from convot.db import scoped
from convot.tokens import TokenIssuer
from tests.engine.seed import seed_tenant
from tests.gateway.proxy import CuttableProxy

pytestmark = pytest.mark.slow
# Scripted senders go faster than a person: the per-socket frame limit is not under test here.
FAST = {"rate_limit_per_second": 1000.0, "rate_limit_burst": 1000}


class Participant:
    """A socket that keeps every message it receives, reconnects on demand and resends
    what was not acknowledged (same client_msg_id), like the widget does."""

    def __init__(self, token: str, port: int):
        self.token, self.port = token, port
        self.ws = None
        self.received: list[dict] = []
        self.acks: dict[str, dict] = {}
        self.conversation: str | None = None
        self.reader: asyncio.Task | None = None
        self.events: dict = {}

    async def open(self, port: int | None = None) -> None:
        self.port = port or self.port
        self.ws = await connect(f"ws://127.0.0.1:{self.port}/", compression=None)
        await self.ws.send(orjson.dumps({"type": "authenticate", "token": self.token}).decode())
        ready = orjson.loads(await asyncio.wait_for(self.ws.recv(), 10))
        assert ready["type"] == "ready", ready
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = orjson.loads(raw)
                if frame["type"] == "message":
                    self.received.append(frame["message"])
                elif frame["type"] == "error":
                    raise AssertionError(f"unexpected error frame: {frame}")
                elif frame["type"] == "ack":
                    self.acks[frame["client_msg_id"]] = frame
                    if self.conversation is None:
                        self.conversation = frame["conversation_id"]
                    waiter = self.events.pop(frame["client_msg_id"], None)
                    if waiter and not waiter.done():
                        waiter.set_result(frame)
        except ConnectionClosed:
            pass

    async def send(self, cmid: str, body: str, timeout: float = 5.0) -> dict | None:
        frame = {"type": "send", "client_msg_id": cmid, "body": body}
        if self.conversation:
            frame["conversation_id"] = self.conversation
        fut = asyncio.get_running_loop().create_future()
        self.events[cmid] = fut
        try:
            await self.ws.send(orjson.dumps(frame).decode())
            return await asyncio.wait_for(fut, timeout)
        except (ConnectionClosed, asyncio.TimeoutError):
            self.events.pop(cmid, None)
            return None

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)

    def unique_ids(self) -> set[str]:
        return {m["id"] for m in self.received}


async def _stored(db, org, conv) -> list:
    async with scoped(db, org_id=org) as conn:
        return await conn.fetch("SELECT seq, id, client_msg_id FROM messages WHERE conversation_id = $1 ORDER BY seq", conv)


async def _wait_stored(db, org, conv, count, timeout=30.0) -> list:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        rows = await _stored(db, org, conv)
        if len(rows) >= count or loop.time() > deadline:
            return rows
        await asyncio.sleep(0.2)


def _check_exactly_once(rows, acks: dict, receivers) -> None:
    acked_ids = {a["id"] for a in acks.values()}
    stored_ids = [r["id"] for r in rows]
    assert len(stored_ids) == len(set(stored_ids)), "a message was stored twice"
    assert acked_ids <= set(stored_ids), f"acknowledged but not stored: {acked_ids - set(stored_ids)}"
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1)), "sequence numbers have a gap"
    cmids = [r["client_msg_id"] for r in rows]
    assert len(cmids) == len(set(cmids)), "a retried send created a second message"
    for who in receivers:
        got = who.unique_ids()
        assert acked_ids <= got, f"{len(acked_ids - got)} acknowledged messages never delivered"
        ordered = []
        for m in who.received:
            if not ordered or m["seq"] > ordered[-1]:
                ordered.append(m["seq"])
        assert ordered == sorted({m["seq"] for m in who.received}), "delivered out of order"


@pytest.fixture
async def tenant(owner_db):
    return await seed_tenant(owner_db, agents=2, contacts=2)


async def test_message_through_gateway_a_reaches_agent_on_gateway_b(config, tenant, db):
    cfg = config.replace(engine={"claim_idle_ms": 1000}, gateway=FAST)
    services = Services(cfg, gateways=2, workers=1, separate_ports=True).start()
    issuer = TokenIssuer(cfg)
    shopper = Participant(issuer.widget_token(tenant.org, tenant.contacts[0], tenant.app)[0], services.port("gateway-1"))
    agent = Participant(issuer.member_token(tenant.org, tenant.agents[0], "agent", 0)[0], services.port("gateway-2"))
    try:
        await agent.open()
        await shopper.open()
        for i in range(20):
            assert await shopper.send(f"s{i}", f"hello {i}")
        rows = await _wait_stored(db, tenant.org, shopper.conversation, 20)
        await asyncio.sleep(0.3)
        _check_exactly_once(rows, shopper.acks, [shopper, agent])
        assert [m["body"] for m in agent.received] == [f"hello {i}" for i in range(20)]
    finally:
        await shopper.close()
        await agent.close()
        await asyncio.to_thread(services.stop)


async def test_kill_9_gateway_and_worker_under_traffic(config, tenant, db):
    cfg = config.replace(engine={"claim_idle_ms": 1000}, gateway=FAST)
    services = Services(cfg, gateways=2, workers=2, separate_ports=True).start()
    issuer = TokenIssuer(cfg)
    shopper = Participant(issuer.widget_token(tenant.org, tenant.contacts[0], tenant.app)[0], services.port("gateway-1"))
    agent = Participant(issuer.member_token(tenant.org, tenant.agents[0], "agent", 0)[0], services.port("gateway-2"))
    try:
        await agent.open()
        await shopper.open()
        pending: list[tuple[str, str]] = []
        for i in range(150):
            cmid, body = f"k{i}", f"msg {i}"
            if i == 50:
                services.kill("engine-1")          # mid-traffic, possibly mid-batch
            if i == 100:
                services.kill("gateway-1")         # the shopper's gateway dies with the socket open
            ack = await shopper.send(cmid, body, timeout=3)
            if ack is None:
                pending.append((cmid, body))
                await shopper.close()
                await shopper.open(services.port("gateway-2"))
                for p_cmid, p_body in pending:     # resend what was not acknowledged, same ids
                    assert await shopper.send(p_cmid, p_body)
                pending.clear()
        rows = await _wait_stored(db, tenant.org, shopper.conversation, 150, timeout=40)
        await asyncio.sleep(0.5)
        assert len(shopper.acks) == 150
        _check_exactly_once(rows, shopper.acks, [agent])
        assert len(rows) == 150
    finally:
        await shopper.close()
        await agent.close()
        await asyncio.to_thread(services.stop)


async def test_postgres_outage_under_traffic_loses_nothing(config, tenant, db, servers):
    pg_port = int(servers.database_url.rsplit(":", 1)[1].split("/")[0])
    proxy = CuttableProxy(pg_port)
    await proxy.start()
    proxied = servers.database_url.replace(f":{pg_port}/", f":{proxy.port}/")
    cfg = config.replace(database={"url": proxied}, engine={"claim_idle_ms": 1000}, gateway=FAST)
    services = Services(cfg, gateways=1, workers=1).start()
    issuer = TokenIssuer(cfg)
    shopper = Participant(issuer.widget_token(tenant.org, tenant.contacts[0], tenant.app)[0], services.port())
    agent = Participant(issuer.member_token(tenant.org, tenant.agents[0], "agent", 0)[0], services.port())
    try:
        await agent.open()
        await shopper.open()
        for i in range(30):
            assert await shopper.send(f"p{i}", f"before {i}")
        await _wait_stored(db, tenant.org, shopper.conversation, 30)
        await proxy.cut()                           # PostgreSQL "down" for the services
        for i in range(30, 90):
            assert await shopper.send(f"p{i}", f"during {i}"), "live chat must go on without PostgreSQL"
        await asyncio.sleep(1.0)
        assert len(await _stored(db, tenant.org, shopper.conversation)) < 90
        assert len(agent.unique_ids()) == 90, "delivered live while PostgreSQL is down"
        await proxy.start()                         # back on the same port
        for i in range(90, 100):
            assert await shopper.send(f"p{i}", f"after {i}")
        rows = await _wait_stored(db, tenant.org, shopper.conversation, 100, timeout=40)
        await asyncio.sleep(0.3)
        assert len(rows) == 100
        _check_exactly_once(rows, shopper.acks, [shopper, agent])
    finally:
        await shopper.close()
        await agent.close()
        await asyncio.to_thread(services.stop)
        await proxy.close()


async def test_sigterm_drains_gateway_and_worker(config, tenant, db):
    services = Services(config, gateways=1, workers=1).start()
    issuer = TokenIssuer(config)
    shopper = Participant(issuer.widget_token(tenant.org, tenant.contacts[0], tenant.app)[0], services.port())
    try:
        await shopper.open()
        for i in range(10):
            assert await shopper.send(f"d{i}", f"drain {i}")
        code = await asyncio.to_thread(services.terminate, "gateway-1")
        assert code == 0
        await asyncio.wait_for(shopper.reader, 5)
        assert shopper.ws.close_code == 4000
        rows = await _wait_stored(db, tenant.org, shopper.conversation, 10)
        assert len(rows) == 10
        assert await asyncio.to_thread(services.terminate, "engine-1") == 0
        assert "Traceback" not in services.log("engine-1") and "Traceback" not in services.log("gateway-1")
    finally:
        await shopper.close()
        await asyncio.to_thread(services.stop)


async def test_removed_member_is_closed_on_every_gateway_process(config, tenant):
    from engine.client import EngineClient

    services = Services(config, gateways=2, workers=0, separate_ports=True).start()
    issuer = TokenIssuer(config)
    token = issuer.member_token(tenant.org, tenant.agents[0], "agent", 0)[0]
    sockets = []
    engine = EngineClient(config)
    await engine.start()
    try:
        for name in ("gateway-1", "gateway-2"):
            ws = await connect(f"ws://127.0.0.1:{services.port(name)}/", compression=None)
            await ws.send(orjson.dumps({"type": "authenticate", "token": token}).decode())
            assert orjson.loads(await ws.recv())["type"] == "ready"
            sockets.append(ws)
        await engine.publish_control({"kind": "member_removed", "org": tenant.org, "user": tenant.agents[0]})
        for ws in sockets:
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), 1.0)   # the requirement: within a second
            assert closed.value.rcvd.code == 4403
    finally:
        await engine.close()
        for ws in sockets:
            await ws.close()
        await asyncio.to_thread(services.stop)
