"""The lean Redis connection of the hot paths: reply routing alone, then against the real Redis."""

import pytest

from engine.resp import ReplyError, StreamReaderConnection, _RespProtocol, encode_command, xread_entries


class _Transport:
    def __init__(self):
        self.closed = False

    def write(self, data):
        pass

    def close(self):
        self.closed = True


async def test_replies_split_across_reads_go_to_their_callers_in_order():
    proto = _RespProtocol()
    proto.connection_made(_Transport())
    first, second = proto.send(b"", 2), proto.send(b"", 1)
    whole = b"*2\r\n$5\r\nhello\r\n*2\r\n$1\r\nk\r\n$1\r\nv\r\n-ERR wrong\r\n$6\r\nab\r\ncd\r\n"
    for i in range(len(whole)):
        proto.data_received(whole[i:i + 1])      # one byte per read: nothing is parsed twice
    replies = await first
    assert replies[0] == [b"hello", [b"k", b"v"]]
    assert isinstance(replies[1], ReplyError) and "wrong" in str(replies[1])
    assert await second == [b"ab\r\ncd"], "binary-safe bulk strings"


async def test_connection_lost_fails_every_waiter():
    proto = _RespProtocol()
    proto.connection_made(_Transport())
    pending = proto.send(b"", 3)
    proto.data_received(b":1\r\n")
    proto.connection_lost(None)
    with pytest.raises(ConnectionError):
        await pending
    with pytest.raises(ConnectionError):
        await proto.send(b"", 1)


def test_encode_and_shape():
    assert encode_command("XREAD", b"k", 5) == b"*3\r\n$5\r\nXREAD\r\n$1\r\nk\r\n$1\r\n5\r\n"
    reply = [[b"s", [[b"1-0", [b"o", b"x", b"f", b"{}"]]]]]
    assert xread_entries(reply) == [(b"s", [(b"1-0", {b"o": b"x", b"f": b"{}"})])]
    assert xread_entries(None) == []
    assert xread_entries([[b"s", [[b"1-0", None]]]]) == [(b"s", [(b"1-0", {})])]


@pytest.fixture
async def lean(servers, redis_client):
    """A StreamReaderConnection to the test Redis; closed, and the test's keys (test:*) removed, after."""
    conn = StreamReaderConnection(servers.redis_url)
    yield conn
    await conn.aclose()
    keys = await redis_client.keys("test:*")
    if keys:
        await redis_client.delete(*keys)


async def test_against_redis(lean, redis_client):
    await redis_client.delete("test:sr")
    first = await redis_client.xadd("test:sr", {"o": "org", "f": b'{"a":"\\r\\n"}'})
    big = "x" * 300_000
    await redis_client.xadd("test:sr", {"o": "org2", "f": big})
    got = await lean.xread({b"test:sr": b"0-0"}, count=10, block=100)
    assert got[0][0] == b"test:sr"
    assert [e[1][b"o"] for e in got[0][1]] == [b"org", b"org2"]
    assert got[0][1][0][0] == first and got[0][1][1][1][b"f"] == big.encode()
    assert await lean.xread({b"test:sr": got[0][1][-1][0]}, count=10, block=50) == []
    assert isinstance(await lean.client_id(), int)


async def test_xreadgroup_against_redis(lean, redis_client):
    await redis_client.delete("test:srg")
    await redis_client.xgroup_create("test:srg", "g", id="0", mkstream=True)
    eid = await redis_client.xadd("test:srg", {"t": "m", "f": "{}"})
    got = await lean.xreadgroup("g", "c1", {"test:srg": ">"}, count=10, block=50)
    assert got == [(b"test:srg", [(eid, {b"t": b"m", b"f": b"{}"})])]
    assert await lean.xreadgroup("g", "c1", {"test:srg": ">"}, count=10, block=50) == []
    with pytest.raises(ConnectionError):
        await lean.xreadgroup("nogroup", "c1", {"test:srg": ">"}, count=10, block=50)


async def test_pipeline_returns_errors_in_place(lean):
    replies = await lean.pipeline([("SET", "test:p", "1"), ("INCR", "test:p"), ("LPUSH", "test:p", "x"),
                                   ("GET", "test:p")])
    assert replies[0] == b"OK" and replies[1] == 2 and replies[3] == b"2"
    assert isinstance(replies[2], ReplyError) and "WRONGTYPE" in str(replies[2])


async def test_pipeline_timeout_closes_the_connection_and_the_next_call_reconnects(lean):
    with pytest.raises(TimeoutError):
        await lean.pipeline([("BLPOP", "test:never", "1")], timeout=0.05)
    assert lean.protocol is None, "a late BLPOP answer must not be read as the next reply"
    assert await lean.pipeline([("PING",)]) == [b"PONG"]