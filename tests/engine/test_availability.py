"""Agent availability against real Redis and PostgreSQL, and through a real gateway: the member's
choice, presence from inbox sockets with a grace period, announcements to teammates and widgets."""

import asyncio
import uuid

import orjson
import pytest

from convot.db import scoped
from engine.availability import (Presence, SocketPresence, effective_state, ephemeral, presence_due_key,
                                 presence_frame, presence_key, set_choice, team_state)
from tests.engine.listener import Listener
from tests.engine.seed import seed_tenant
from tests.gateway.conftest import running_gateway

GRACE, LEASE = 0.4, 1.2


@pytest.fixture
def wf_config(servers):
    return servers.config(workflow={"presence_grace": GRACE, "presence_lease": LEASE, "sweep_interval": 0.1})


@pytest.fixture
async def presence(wf_config, db, redis_client):
    return Presence(wf_config, redis_client, db)


@pytest.fixture
async def tenant(owner_db):
    return await seed_tenant(owner_db, agents=3, admins=1, contacts=1)


async def swept(presence, org):
    """This organisation's departures found by one sweep (other tests' sockets may lapse meanwhile)."""
    return [pair for pair in await presence.sweep() if pair[0] == org]


async def choose(db, org, user, choice):
    async with scoped(db, org_id=org) as conn:
        return await set_choice(conn, org, user, choice)


def test_pure_states_and_frames():
    assert effective_state("busy", True) == "busy" and effective_state("online", False) == "offline"
    assert team_state(["offline", "busy", "online"]) == "online" and team_state(["busy", "offline"]) == "away"
    with pytest.raises(ValueError):
        effective_state("lunch", True)
    assert ephemeral("o1", b"{}", "m") == b"o1||m||{}"
    assert orjson.loads(presence_frame("u", "busy")) == {"type": "presence", "subject": {"kind": "member", "id": "u"},
                                                         "state": "busy"}
    assert presence_key(3, "o") == "cv:{3}:pr:o" and presence_due_key(3) == "cv:{3}:prdue"


async def test_presence_arrives_once_and_leaves_after_the_grace_period(presence, tenant):
    org, agent = tenant.org, tenant.agents[0]
    assert await presence.set_entries(org, [(agent, "c1", 60000, "c")]) == [agent]
    assert await presence.set_entries(org, [(agent, "c2", 60000, "c")]) == []        # second socket: no news
    assert await presence.present(org) == {agent}
    await presence.set_entries(org, [(agent, "c1", int(GRACE * 1000), "d")])
    assert await swept(presence, org) == []                                              # c2 still open
    await presence.set_entries(org, [(agent, "c2", int(GRACE * 1000), "d")])
    assert await presence.present(org) == {agent}                                    # within the grace period
    assert await swept(presence, org) == []
    await asyncio.sleep(GRACE + 0.1)
    assert await presence.present(org) == set()
    assert await swept(presence, org) == [(org, agent)]
    assert await swept(presence, org) == []


async def test_reconnect_within_grace_is_not_a_departure(presence, tenant):
    org, agent = tenant.org, tenant.agents[0]
    await presence.set_entries(org, [(agent, "old", 60000, "c"), (agent, "old", int(GRACE * 1000), "d")])
    assert await presence.set_entries(org, [(agent, "new", 60000, "c")]) == []      # still present: no arrival
    await asyncio.sleep(GRACE + 0.1)
    assert await swept(presence, org) == []                                             # "old" lapsed, "new" is open
    assert await presence.present(org) == {agent}


async def test_a_closed_socket_that_was_already_swept_is_not_revived(presence, tenant):
    org, agent = tenant.org, tenant.agents[0]
    await presence.set_entries(org, [(agent, "c", 100, "c")])
    await asyncio.sleep(0.2)
    assert await swept(presence, org) == [(org, agent)]
    assert await presence.set_entries(org, [(agent, "c", int(GRACE * 1000), "d")]) == []
    assert await presence.present(org) == set()


async def test_two_sweepers_report_each_departure_once(wf_config, db, redis_client, tenant):
    one, two = Presence(wf_config, redis_client, db), Presence(wf_config, redis_client, db)
    org = tenant.org
    for agent in tenant.agents:
        await one.set_entries(org, [(agent, "c", 100, "c")])
    await asyncio.sleep(0.2)
    a, b = await asyncio.gather(one.sweep(), two.sweep())
    assert sorted(p for p in a + b if p[0] == org) == sorted((org, u) for u in tenant.agents)


async def test_online_agents_are_those_who_chose_online_and_have_an_inbox_open(presence, db, tenant, owner_db):
    org = tenant.org
    dana, erin, fred = tenant.agents
    assert await choose(db, org, dana, "online") == "offline"
    await choose(db, org, erin, "online")
    await choose(db, org, fred, "busy")
    assert await choose(db, org, str(uuid.uuid4()), "online") is None               # not a member
    await presence.set_entries(org, [(dana, "c", 60000, "c"), (fred, "c", 60000, "c")])   # erin: no inbox open
    async with scoped(db, org_id=org) as conn:
        assert await presence.online_agents(conn, org) == [dana]
        states = {s.user_id: s.state for s in await presence.states(conn, org)}
        assert (states[dana], states[erin], states[fred], states[tenant.owner]) == ("online", "offline", "busy", "offline")
        assert await presence.team(conn, org) == "online"
    # Another organisation never sees these sockets.
    other = await seed_tenant(owner_db, agents=1, admins=0, contacts=0)
    assert await presence.present(other.org) == set()


async def test_announcements_carry_member_states_and_the_team_summary(presence, db, redis_client, wf_config, tenant):
    org, dana = tenant.org, tenant.agents[0]
    await choose(db, org, dana, "online")
    async with Listener(redis_client, wf_config, org) as listener:
        await presence.set_entries(org, [(dana, "c", 60000, "c")])
        await presence.announce(org, [dana])
        frames = await listener.frames()
    assert [(a, f["subject"], f["state"]) for a, f in frames] == [
        (b"o", {"kind": "member", "id": dana}, "online"), (b"o", {"kind": "team"}, "online")]


async def test_socket_presence_writer_keeps_sockets_alive_and_lets_closed_ones_lapse(presence, tenant):
    org, dana = tenant.org, tenant.agents[0]
    sockets = SocketPresence(presence)
    writer = asyncio.get_running_loop().create_task(sockets.run())
    try:
        sockets.connected("conn-1", org, dana)
        await asyncio.sleep(0.1)
        assert await presence.present(org) == {dana}
        await asyncio.sleep(LEASE + 0.3)                       # longer than the lease: heartbeats keep it
        assert await swept(presence, org) == [] and await presence.present(org) == {dana}
        sockets.disconnected("conn-1")
        sockets.disconnected("conn-1")                         # twice: no harm
        await asyncio.sleep(0.1)
        assert await presence.present(org) == {dana}           # grace period
        await asyncio.sleep(GRACE)
        assert await swept(presence, org) == [(org, dana)]
        # connect + disconnect queued together end closed (applied in order)
        sockets.connected("conn-2", org, dana)
        sockets.disconnected("conn-2")
        await asyncio.sleep(GRACE + 0.2)
        assert await presence.present(org) == set()
    finally:
        await sockets.close(writer)
    assert writer.done()


@pytest.fixture
async def gw(wf_config):
    async with running_gateway(wf_config) as h:
        yield h


async def presence_frames(client, wait=0.6):
    """Member and team presence frames (a shopper's own presence goes to members too: not these)."""
    return [(f["subject"].get("id", "team"), f["state"]) for f in await client.quiet(wait)
            if f["type"] == "presence" and f["subject"]["kind"] in ("member", "team")]


async def test_through_the_gateway_teammates_and_widgets_see_availability_live(gw, presence, db, tenant):
    org = tenant.org
    dana, erin = tenant.agents[0], tenant.agents[1]
    erin_socket = await gw.member(tenant, erin)
    assert await presence_frames(erin_socket) == [(erin, "offline"), ("team", "away")]   # her own arrival
    shopper = await gw.shopper(tenant)
    dana_socket = await gw.member(tenant, dana)
    # Dana arrives with her stored choice (offline by default): nobody online yet.
    assert await presence_frames(erin_socket) == [(dana, "offline"), ("team", "away")]
    assert await presence_frames(shopper, 0.1) == [(dana, "offline"), ("team", "away")]
    await dana_socket.send(type="presence", state="online", ref="p1")
    assert (await dana_socket.expect("ok"))["ref"] == "p1"
    assert await presence_frames(erin_socket) == [(dana, "online"), ("team", "online")]
    assert await presence_frames(shopper) == [(dana, "online"), ("team", "online")]
    async with scoped(db, org_id=org) as conn:
        assert await presence.online_agents(conn, org) == [dana]
    await dana_socket.send(type="presence", state="lunch")
    assert (await dana_socket.expect("error"))["code"] == "bad_frame"
    # Dana closes her inbox: after the grace period (and a sweep) she is offline; her choice stays.
    await dana_socket.close()
    await asyncio.sleep(0.2)
    assert await swept(presence, org) == []
    async with scoped(db, org_id=org) as conn:
        assert await presence.online_agents(conn, org) == [dana]          # still within the grace period
    await asyncio.sleep(GRACE)
    assert await swept(presence, org) == [(org, dana)]
    assert await presence_frames(erin_socket) == [(dana, "offline"), ("team", "away")]
    assert await presence_frames(shopper) == [(dana, "offline"), ("team", "away")]
    async with scoped(db, org_id=org) as conn:
        assert await conn.fetchval("SELECT availability FROM members WHERE org_id = $1 AND user_id = $2",
                                   org, dana) == "online"
        assert await presence.online_agents(conn, org) == []
    # She comes back: online again without choosing again.
    await gw.member(tenant, dana)
    assert await presence_frames(erin_socket) == [(dana, "online"), ("team", "online")]


async def test_a_shopper_cannot_set_availability(gw, tenant):
    shopper = await gw.shopper(tenant)
    await shopper.send(type="presence", state="online", ref=1)
    err = await shopper.expect("error")
    assert err["code"] == "forbidden" and err["ref"] == 1
