"""engine/groups.py against real Redis: group creation, a partial batch that lingers for more,
taking over another consumer's idle entries, our own pending entries, acknowledgement, a group
Redis lost (NOGROUP) created again, and the same reads through the lean engine/resp.py
connection."""

import logging
import uuid

import pytest
from redis.exceptions import ResponseError

from engine.groups import GroupReader, flatten
from engine.resp import StreamReaderConnection


async def _streams(redis_client, n: int = 2) -> list[str]:
    """Shard-shaped stream keys of this test's own (unused hash tags)."""
    tag = uuid.uuid4().hex[:8]
    return [f"cv:{{g-{tag}-{i}}}:s" for i in range(n)]


def _reader(redis_client, streams, **kw) -> GroupReader:
    options = {"start_id": "0", "count": 10, "claim_idle_ms": 60000, "consumer": f"c-{uuid.uuid4().hex[:6]}"}
    return GroupReader(redis_client, kw.pop("group", "g"), streams, **{**options, **kw})


async def _add(redis_client, stream: str, n: int, tag: str = "x") -> list[bytes]:
    return [await redis_client.xadd(stream, {"n": f"{tag}{i}"}) for i in range(n)]


async def _pending_ids(redis_client, stream: str, group: str = "g") -> dict[bytes, bytes]:
    """entry id -> owning consumer, from XPENDING."""
    rows = await redis_client.xpending_range(stream, group, min="-", max="+", count=1000)
    return {r["message_id"]: r["consumer"] for r in rows}


class AppendsAfterFirstRead:
    """The real client; right after the first XREADGROUP answers, more entries arrive (another
    process appending while this one lingers): a deterministic interleaving, no timing."""

    def __init__(self, redis_client, stream: str, n: int):
        self.redis, self.stream, self.n = redis_client, stream, n
        self.calls: list[dict] = []

    async def xreadgroup(self, group, consumer, streams, count=None, block=None):
        self.calls.append({"count": count, "block": block})
        reply = await self.redis.xreadgroup(group, consumer, streams, count=count, block=block)
        if len(self.calls) == 1:
            await _add(self.redis, self.stream, self.n, "late")
        return reply


async def test_create_tolerates_an_existing_group_and_starts_where_asked(redis_client):
    old, new = await _streams(redis_client)
    await _add(redis_client, old, 2)
    await _add(redis_client, new, 2)
    from_start = _reader(redis_client, [old], start_id="0")
    await from_start.create()
    await from_start.create()                                   # BUSYGROUP: fine
    from_now = _reader(redis_client, [new], group="h", start_id="$")
    await from_now.create()
    assert [f[b"n"] for _, _, f in await from_start.read(10)] == [b"x0", b"x1"]
    assert await from_now.read(10) == []                        # history is not its business
    [added] = await _add(redis_client, new, 1, "fresh")
    assert await from_now.read(10) == [(new, added, {b"n": b"fresh0"})]
    await redis_client.delete(old, new)


async def test_a_partial_batch_lingers_and_collects_what_arrived_meanwhile(redis_client):
    [stream] = await _streams(redis_client, 1)
    await _add(redis_client, stream, 2)
    source = AppendsAfterFirstRead(redis_client, stream, 3)
    reader = _reader(source, [stream], linger=0.01)
    await redis_client.xgroup_create(stream, "g", id="0")
    entries = await reader.read(50)
    assert [f[b"n"] for _, _, f in entries] == [b"x0", b"x1", b"late0", b"late1", b"late2"]
    # The second read asks only for the rest of the batch, and does not block.
    assert source.calls == [{"count": 10, "block": 50}, {"count": 8, "block": None}]
    await redis_client.delete(stream)


async def test_no_linger_when_disabled_or_when_the_batch_is_full(redis_client):
    [stream] = await _streams(redis_client, 1)
    await redis_client.xgroup_create(stream, "g", id="0", mkstream=True)
    await _add(redis_client, stream, 2)
    source = AppendsAfterFirstRead(redis_client, stream, 3)
    stopping = _reader(source, [stream], linger=0.01)
    assert len(await stopping.read(50, linger=False)) == 2 and len(source.calls) == 1
    full = AppendsAfterFirstRead(redis_client, stream, 1)
    assert len(await _reader(full, [stream], linger=0.01, count=3).read(50)) == 3 and len(full.calls) == 1
    await redis_client.delete(stream)


async def test_claim_takes_over_another_consumers_idle_entries_only(redis_client):
    one, two = await _streams(redis_client)
    dead = _reader(redis_client, [one, two])
    await dead.create()
    ids = {one: await _add(redis_client, one, 3), two: await _add(redis_client, two, 2)}
    assert len(await dead.read(10)) == 5                        # read, then the process died
    claimed_log = []
    patient = _reader(redis_client, [one, two], claim_idle_ms=60000)
    assert await patient.claim() == []                          # not idle long enough: still theirs
    live = _reader(redis_client, [one, two], claim_idle_ms=0, count=2,
                   on_claimed=lambda stream, n: claimed_log.append((stream, n)))
    first = await live.claim()                                  # two per stream per call
    assert [(s, e) for s, e, _ in first] == [(one, ids[one][0]), (one, ids[one][1]),
                                             (two, ids[two][0]), (two, ids[two][1])]
    assert set((await _pending_ids(redis_client, two)).values()) == {live.consumer.encode()}
    await live.ack(first)
    assert await live.claim() == [(one, ids[one][2], {b"n": b"x2"})]   # the cursor went on
    assert claimed_log == [(one, 2), (two, 2), (one, 1)]
    assert await _pending_ids(redis_client, one) == {ids[one][2]: live.consumer.encode()}
    await redis_client.delete(one, two)


async def test_claim_limit_and_cadence(redis_client):
    one, two = await _streams(redis_client)
    dead = _reader(redis_client, [one, two])
    await dead.create()
    await _add(redis_client, one, 3)
    await _add(redis_client, two, 3)
    await dead.read(10)
    limited = _reader(redis_client, [one, two], claim_idle_ms=0, count=5, claim_limit=3)
    assert {s for s, _, _ in await limited.claim()} == {one}   # enough in hand: the next stream waits
    due = _reader(redis_client, [one, two], claim_idle_ms=0, claim_every=3600)
    everything = await due.claim_if_due()
    assert len(everything) == 6
    await due.ack(everything)
    await _add(redis_client, one, 1)
    await dead.read(10)
    assert await due.claim_if_due() == []                       # not due again for an hour
    due.claim_soon()
    assert len(await due.claim_if_due()) == 1
    await redis_client.delete(one, two)


async def test_entries_trimmed_while_pending_are_acknowledged_not_returned(redis_client):
    [stream] = await _streams(redis_client, 1)
    live = _reader(redis_client, [stream], claim_idle_ms=50_000, count=2)
    await live.create()
    ids = await _add(redis_client, stream, 6)
    in_hand = await redis_client.xreadgroup("g", live.consumer, {stream: ">"}, count=1)   # ids[0], just read
    await redis_client.xreadgroup("g", "dead", {stream: ">"}, count=10)                  # ids[1:]
    # The dead consumer's entries have been idle for 100 s (XCLAIM ... IDLE sets that, no waiting).
    await redis_client.xclaim(stream, "g", "dead", 0, ids[1:], idle=100_000)
    await redis_client.xdel(stream, ids[2], ids[4])                                       # trimmed meanwhile
    claimed = [await live.claim() for _ in range(3)]
    assert [[e for _, e, _ in batch] for batch in claimed] == [[ids[1]], [ids[3]], [ids[5]]]
    # The deleted ones are acknowledged; ours in hand (existing, not idle) is left alone.
    assert in_hand[0][1][0][0] == ids[0]
    assert await _pending_ids(redis_client, stream) == {e: live.consumer.encode()
                                                        for e in (ids[0], ids[1], ids[3], ids[5])}
    await redis_client.delete(stream)


async def test_own_pending_returns_an_entry_deleted_meanwhile_with_empty_fields(redis_client):
    [stream] = await _streams(redis_client, 1)
    me = _reader(redis_client, [stream])
    await me.create()
    kept, gone = await _add(redis_client, stream, 2)
    await me.read(10)
    await redis_client.xdel(stream, gone)
    assert await me.own_pending() == [(stream, kept, {b"n": b"x0"}), (stream, gone, {})]
    await redis_client.delete(stream)


async def test_own_pending_and_ack(redis_client):
    one, two = await _streams(redis_client)
    me = _reader(redis_client, [one, two])
    other = _reader(redis_client, [one, two])
    await me.create()
    await _add(redis_client, one, 2)
    mine = await me.read(10)
    await _add(redis_client, two, 1)
    theirs = await other.read(10)
    assert await me.own_pending() == mine                       # what I read, not what they did
    await me.ack(mine[:1])
    assert await me.own_pending() == mine[1:]
    # In the caller's pipeline, next to its own commands (the worker's dead letters, say).
    pipe = redis_client.pipeline(transaction=False)
    pipe.set(f"{one}-marker", "1")
    me.add_acks(pipe, mine[1:] + theirs)
    assert await pipe.execute() == [True, 1, 1]
    assert await me.own_pending() == [] and await _pending_ids(redis_client, one) == {}
    assert await _pending_ids(redis_client, two) == {}
    await me.ack([])                                             # nothing to acknowledge: no error
    await redis_client.delete(one, two, f"{one}-marker")


async def test_reads_through_the_lean_connection_have_the_same_shape(servers, redis_client):
    one, two = await _streams(redis_client)
    conn = StreamReaderConnection(servers.redis_url)
    try:
        lean = _reader(redis_client, [one, two], connection=conn, linger=0.001)
        await lean.create()
        a = await _add(redis_client, one, 2)
        b = await _add(redis_client, two, 1)
        got = await lean.read(50)
        assert sorted(got) == sorted([(one, a[0], {b"n": b"x0"}), (one, a[1], {b"n": b"x1"}),
                                      (two, b[0], {b"n": b"x0"})])
        assert sorted(await lean.own_pending()) == sorted(got)
        await lean.ack(got)
        assert await lean.own_pending() == []
    finally:
        await conn.aclose()
        await redis_client.delete(one, two)


def test_flatten_decodes_stream_names_and_empties_missing_fields():
    assert flatten(None) == []
    assert flatten([[b"s", [(b"1-0", {b"a": b"b"}), (b"2-0", None)]]]) == [("s", b"1-0", {b"a": b"b"}),
                                                                         ("s", b"2-0", {})]


@pytest.mark.parametrize("start_id", ["0", "$"])
async def test_create_makes_missing_streams(redis_client, start_id):
    [stream] = await _streams(redis_client, 1)
    await _reader(redis_client, [stream], start_id=start_id).create()
    groups = await redis_client.xinfo_groups(stream)
    assert [g["name"] for g in groups] == [b"g"]
    await redis_client.delete(stream)


# ---- a lost group (NOGROUP: Redis restarted without its data) -----------------------------------

async def _group_names(redis_client, stream: str) -> list[bytes]:
    return [g["name"] for g in await redis_client.xinfo_groups(stream)] if await redis_client.exists(stream) else []


def _recreated(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "convot.engine.groups"]


async def _lose(redis_client, stream: str, how: str) -> None:
    if how == "group destroyed":
        await redis_client.xgroup_destroy(stream, "g")
    else:                                                       # what a restart without data leaves
        await redis_client.delete(stream)


@pytest.mark.parametrize("how", ["group destroyed", "stream deleted"])
@pytest.mark.parametrize("start_id", ["0", "$"])
@pytest.mark.parametrize("lean", [False, True], ids=["redis-py", "lean"])
async def test_a_read_that_finds_its_group_lost_creates_it_again_and_reading_goes_on(
        servers, redis_client, caplog, how, start_id, lean):
    [stream] = await _streams(redis_client, 1)
    conn = StreamReaderConnection(servers.redis_url) if lean else None
    try:
        hooks = []

        async def on_recreate():
            hooks.append(await _group_names(redis_client, stream))  # what there is when it runs

        reader = _reader(redis_client, [stream], start_id=start_id, connection=conn, on_recreate=on_recreate)
        await reader.create()
        await _add(redis_client, stream, 2, "old")
        assert len(await reader.read(10)) == 2                      # appended after create(): new to both
        await _lose(redis_client, stream, how)
        caplog.set_level(logging.WARNING, logger="convot.engine.groups")
        assert await reader.read(10) == []                          # no error: the group is back
        assert _recreated(caplog) == ["consumer group g missing; creating it again"]
        assert hooks == [[]] and await _group_names(redis_client, stream) == [b"g"]
        [new] = await _add(redis_client, stream, 1, "new")
        got = [f[b"n"] for _, _, f in await reader.read(10)]
        # The start id of start-up: "0" reads what the stream still holds, "$" only what came after.
        history = [b"old0", b"old1"] if start_id == "0" and how == "group destroyed" else []
        assert got == history + [b"new0"]
        assert len(_recreated(caplog)) == 1                         # once per loss, not per read
        assert (await _pending_ids(redis_client, stream))[new] == reader.consumer.encode()
    finally:
        if conn is not None:
            await conn.aclose()
        await redis_client.delete(stream)


class LosesGroupAfterFirstRead:
    """The real client; right after the first XREADGROUP answers, the group is destroyed (Redis
    lost it while this reader lingered for the rest of its batch)."""

    def __init__(self, redis_client, stream: str):
        self.redis, self.stream, self.calls = redis_client, stream, 0

    async def xreadgroup(self, group, consumer, streams, count=None, block=None):
        self.calls += 1
        reply = await self.redis.xreadgroup(group, consumer, streams, count=count, block=block)
        if self.calls == 1:
            await self.redis.xgroup_destroy(self.stream, group)
        return reply

    def __getattr__(self, name):
        return getattr(self.redis, name)


async def test_a_batch_read_before_the_group_went_is_returned(redis_client, caplog):
    [stream] = await _streams(redis_client, 1)
    await redis_client.xgroup_create(stream, "g", id="$", mkstream=True)
    await _add(redis_client, stream, 2)
    source = LosesGroupAfterFirstRead(redis_client, stream)
    reader = _reader(source, [stream], start_id="$", linger=0.001)
    caplog.set_level(logging.WARNING, logger="convot.engine.groups")
    assert [f[b"n"] for _, _, f in await reader.read(50)] == [b"x0", b"x1"]
    assert source.calls == 2 and len(_recreated(caplog)) == 1
    assert await _group_names(redis_client, stream) == [b"g"]
    await redis_client.delete(stream)


async def test_own_pending_and_claim_create_a_lost_group_again(redis_client, caplog):
    one, two = await _streams(redis_client)
    dead = _reader(redis_client, [one, two])
    live = _reader(redis_client, [one, two], claim_idle_ms=0, count=1)
    await dead.create()
    ids = await _add(redis_client, one, 3)
    assert len(await dead.read(10)) == 3
    assert [e for _, e, _ in await live.claim()] == [ids[0]]     # its cursor is now past ids[0]
    caplog.set_level(logging.WARNING, logger="convot.engine.groups")
    await _lose(redis_client, one, "group destroyed")
    assert await live.own_pending() == []
    assert await _group_names(redis_client, one) == [b"g"] and len(_recreated(caplog)) == 1
    await _lose(redis_client, one, "group destroyed")
    assert await live.claim() == []
    assert await _group_names(redis_client, one) == [b"g"] and len(_recreated(caplog)) == 2
    # The new group (start id "0") hands the history out again; the claim starts at its beginning.
    assert len(await dead.read(10)) == 3
    assert [e for _, e, _ in await live.claim()] == [ids[0]]
    await redis_client.delete(one, two)


async def test_other_refusals_are_the_callers(servers, redis_client, caplog):
    [stream] = await _streams(redis_client, 1)
    await redis_client.set(stream, "not a stream")
    conn = StreamReaderConnection(servers.redis_url)
    caplog.set_level(logging.WARNING, logger="convot.engine.groups")
    try:
        for reader in (_reader(redis_client, [stream]), _reader(redis_client, [stream], connection=conn)):
            with pytest.raises((ResponseError, ConnectionError), match="WRONGTYPE"):
                await reader.read(10)
            with pytest.raises(ResponseError, match="WRONGTYPE"):
                await reader.claim()
        assert _recreated(caplog) == [] and await redis_client.get(stream) == b"not a stream"
    finally:
        await conn.aclose()
        await redis_client.delete(stream)
