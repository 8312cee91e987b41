"""The protocol's pure core: parsing, validation, rate limiting, states, frame bytes."""

import struct
import uuid

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import protocol as p
from gateway.errors import GatewayError

L = p.Limits(max_message_chars=100)
CONV = str(uuid.uuid4())


def parse(obj):
    return p.parse(orjson.dumps(obj), L)


def code_of(obj_or_raw):
    with pytest.raises(GatewayError) as err:
        p.parse(obj_or_raw if isinstance(obj_or_raw, (str, bytes)) else orjson.dumps(obj_or_raw), L)
    return err.value.code, err.value.ref


def test_every_frame_type_parses():
    assert parse({"type": "authenticate", "token": "t"}) == p.Authenticate("t")
    s = parse({"type": "send", "conversation_id": CONV, "client_msg_id": "c1", "body": "hi", "ref": 5})
    assert s == p.Send(CONV, "c1", "hi", "reply", None, 5)
    assert parse({"type": "send", "client_msg_id": "c1", "body": "x", "kind": "note", "meta": {"a": 1}}).kind == "note"
    assert parse({"type": "typing", "conversation_id": CONV, "active": False}).active is False
    assert parse({"type": "read", "conversation_id": CONV, "seq": 3}).seq == 3
    assert parse({"type": "presence", "state": "busy"}).state == "busy"
    assert parse({"type": "resume", "conversations": {CONV: 4}}).conversations == {CONV: 4}
    h = parse({"type": "history", "conversation_id": CONV})
    assert (h.before_seq, h.limit) == (None, 50)
    u = parse({"type": "conversation.update", "conversation_id": CONV, "status": "resolved", "assignee_id": None})
    assert u.status == "resolved" and u.assignee_id is None and not u.keeps_assignee
    assert parse({"type": "conversation.update", "conversation_id": CONV, "add_tags": ["vip"]}).keeps_assignee
    assert parse({"type": "message.delete", "conversation_id": CONV, "seq": 1}).seq == 1
    assert parse({"type": "token.refresh", "token": "t", "ref": "r"}).ref == "r"
    assert parse({"type": "ping"}) == p.Ping()


@pytest.mark.parametrize("frame,code", [
    ("{bad", "bad_json"), ("[]", "bad_json"), ("3", "bad_json"), (b"\xff\xfe", "bad_json"),
    ({"no": "type"}, "unknown_type"), ({"type": "launch"}, "unknown_type"), ({"type": 3}, "unknown_type"),
    ({"type": "send", "client_msg_id": "c", "body": ""}, "bad_frame"),
    ({"type": "send", "client_msg_id": "c c", "body": "x"}, "bad_frame"),
    ({"type": "send", "client_msg_id": "c", "body": "x" * 101}, "message_too_long"),
    ({"type": "send", "client_msg_id": "c", "body": "x", "kind": "shout"}, "bad_frame"),
    ({"type": "send", "client_msg_id": "c", "body": "x", "conversation_id": "abc"}, "bad_frame"),
    ({"type": "send", "client_msg_id": "c", "body": "x", "meta": "str"}, "bad_frame"),
    ({"type": "read", "conversation_id": CONV, "seq": -1}, "bad_frame"),
    ({"type": "read", "conversation_id": CONV, "seq": True}, "bad_frame"),
    ({"type": "presence", "state": "asleep"}, "bad_frame"),
    ({"type": "resume", "conversations": {"x": 1}}, "bad_frame"),
    ({"type": "resume", "conversations": {str(uuid.uuid4()): 0 for _ in range(201)}}, "bad_frame"),
    ({"type": "history", "conversation_id": CONV, "limit": 1000}, "bad_frame"),
    ({"type": "conversation.update", "conversation_id": CONV, "status": "closed"}, "bad_frame"),
    ({"type": "conversation.update", "conversation_id": CONV, "tags": "vip"}, "bad_frame"),
    ({"type": "authenticate", "token": ""}, "bad_frame"),
    ({"type": "ping", "ref": {"nested": 1}}, "bad_frame"),
    ({"type": "ping", "ref": "x" * 65}, "bad_frame"),
])
def test_bad_frames_have_stable_codes(frame, code):
    assert code_of(frame)[0] == code


def test_huge_integers_are_bad_json():
    conv = CONV
    assert code_of('{"type": "read", "conversation_id": "%s", "seq": 123456789012345678901234567890}' % conv)[0] in ("bad_json", "bad_frame")


def test_errors_carry_the_ref():
    assert code_of({"type": "send", "client_msg_id": "c", "body": "", "ref": 9}) == ("bad_frame", 9)
    assert code_of({"type": "nope", "ref": "r1"}) == ("unknown_type", "r1")


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(data):
    try:
        p.parse(data, L)
    except GatewayError as exc:
        assert exc.code in ("bad_json", "bad_frame", "unknown_type", "message_too_long")


@given(st.dictionaries(st.text(max_size=10), st.one_of(st.none(), st.integers(-2**63, 2**63 - 1), st.text(max_size=20),
                                                        st.booleans()), max_size=6))
def test_arbitrary_objects_never_crash(obj):
    for t in list(p.PARSERS) + ["x"]:
        try:
            p.parse(orjson.dumps({**obj, "type": t}), L)
        except GatewayError:
            pass


def test_token_bucket_limits_and_flags_floods():
    now = [0.0]
    bucket = p.TokenBucket(rate=2.0, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5
    assert bucket.take() and not bucket.take()
    assert not bucket.flooding
    for _ in range(3):
        bucket.take()
    assert bucket.flooding
    now[0] += 10
    assert bucket.take() and not bucket.flooding


def test_state_machine():
    sm = p.StateMachine()
    with pytest.raises(GatewayError) as err:
        sm.accepts(p.Ping())
    assert err.value.code == "protocol_violation"
    sm.accepts(p.Authenticate("t"))
    sm.to(p.ConnState.READY)
    with pytest.raises(GatewayError) as err:
        sm.accepts(p.Authenticate("t"))
    assert err.value.code == "already_authenticated"
    sm.accepts(p.Ping())
    sm.to(p.ConnState.DRAINING)
    sm.accepts(p.Ping())
    sm.to(p.ConnState.CLOSED)
    with pytest.raises(p.IllegalTransition):
        sm.to(p.ConnState.READY)
    with pytest.raises(GatewayError):
        sm.accepts(p.Ping())


@pytest.mark.parametrize("n", [0, 125, 126, 65535, 65536])
def test_text_frame_header(n):
    payload = b"a" * n
    frame = p.text_frame(payload)
    assert frame[0] == 0x81 and frame.endswith(payload)
    if n < 126:
        assert frame[1] == n
    elif n < 65536:
        assert frame[1] == 126 and struct.unpack("!H", frame[2:4])[0] == n
    else:
        assert frame[1] == 127 and struct.unpack("!Q", frame[2:10])[0] == n
