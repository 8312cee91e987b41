"""The lean RESP reader of the stream reads: parsing alone, then against the real Redis."""

import pytest

from engine.resp import Incomplete, ReplyError, StreamReaderConnection, encode_command, parse_reply, xread_entries


def test_parse_values():
    assert parse_reply(b"+OK\r\n") == (b"OK", 5)
    assert parse_reply(b":42\r\n") == (42, 5)
    assert parse_reply(b"$3\r\nabc\r\n") == (b"abc", 9)
    assert parse_reply(b"$-1\r\n") == (None, 5)
    assert parse_reply(b"*-1\r\n") == (None, 5)
    assert parse_reply(b"*2\r\n$1\r\na\r\n*1\r\n:7\r\n")[0] == [b"a", [7]]
    err, _ = parse_reply(b"-ERR wrong\r\n")
    assert isinstance(err, ReplyError) and "wrong" in str(err)
    assert parse_reply(b"$6\r\nab\r\ncd\r\n")[0] == b"ab\r\ncd", "binary-safe bulk strings"


@pytest.mark.parametrize("cut", range(1, 30))
def test_incomplete_replies_wait_for_more(cut):
    whole = b"*2\r\n$5\r\nhello\r\n*2\r\n$1\r\nk\r\n$1\r\nv\r\n"
    if cut < len(whole):
        with pytest.raises(Incomplete):
            parse_reply(whole[:cut])
    assert parse_reply(whole)[0] == [b"hello", [b"k", b"v"]]


def test_encode_and_shape():
    assert encode_command("XREAD", b"k", 5) == b"*3\r\n$5\r\nXREAD\r\n$1\r\nk\r\n$1\r\n5\r\n"
    reply = [[b"s", [[b"1-0", [b"o", b"x", b"f", b"{}"]]]]]
    assert xread_entries(reply) == [(b"s", [(b"1-0", {b"o": b"x", b"f": b"{}"})])]
    assert xread_entries(None) == []
    assert xread_entries([[b"s", [[b"1-0", None]]]]) == [(b"s", [(b"1-0", {})])]


async def test_against_redis(servers, redis_client):
    conn = StreamReaderConnection(servers.redis_url)
    try:
        await redis_client.delete("test:sr")
        first = await redis_client.xadd("test:sr", {"o": "org", "f": b'{"a":"\\r\\n"}'})
        big = "x" * 300_000
        await redis_client.xadd("test:sr", {"o": "org2", "f": big})
        got = await conn.xread({b"test:sr": b"0-0"}, count=10, block=100)
        assert got[0][0] == b"test:sr"
        assert [e[1][b"o"] for e in got[0][1]] == [b"org", b"org2"]
        assert got[0][1][0][0] == first and got[0][1][1][1][b"f"] == big.encode()
        assert await conn.xread({b"test:sr": got[0][1][-1][0]}, count=10, block=50) == []
        assert isinstance(await conn.client_id(), int)
    finally:
        await conn.aclose()
        await redis_client.delete("test:sr")


async def test_xreadgroup_against_redis(servers, redis_client):
    conn = StreamReaderConnection(servers.redis_url)
    try:
        await redis_client.delete("test:srg")
        await redis_client.xgroup_create("test:srg", "g", id="0", mkstream=True)
        eid = await redis_client.xadd("test:srg", {"t": "m", "f": "{}"})
        got = await conn.xreadgroup("g", "c1", {"test:srg": ">"}, count=10, block=50)
        assert got == [(b"test:srg", [(eid, {b"t": b"m", b"f": b"{}"})])]
        assert await conn.xreadgroup("g", "c1", {"test:srg": ">"}, count=10, block=50) == []
        with pytest.raises(ConnectionError):
            await conn.xreadgroup("nogroup", "c1", {"test:srg": ">"}, count=10, block=50)
    finally:
        await conn.aclose()
        await redis_client.delete("test:srg")


async def test_pipeline_returns_errors_in_place(servers, redis_client):
    conn = StreamReaderConnection(servers.redis_url)
    try:
        replies = await conn.pipeline([("SET", "test:p", "1"), ("INCR", "test:p"), ("LPUSH", "test:p", "x"),
                                       ("GET", "test:p")])
        assert replies[0] == b"OK" and replies[1] == 2 and replies[3] == b"2"
        assert isinstance(replies[2], ReplyError) and "WRONGTYPE" in str(replies[2])
    finally:
        await conn.aclose()
        await redis_client.delete("test:p")
