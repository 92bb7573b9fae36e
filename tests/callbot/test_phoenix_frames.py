"""V2 JSON framing: the exact wire text and what decode refuses."""

from __future__ import annotations

import pytest

from callbot.errors import FrameError, FrameTooDeep
from callbot.phoenix.frames import Message, decode


def test_encode_is_the_v2_array_without_spaces() -> None:
    message = Message("3", "4", "call:lobby", "join_call", {"a": [1, None]})
    assert message.encode() == '["3","4","call:lobby","join_call",{"a":[1,null]}]'


def test_heartbeat_has_null_join_ref() -> None:
    message = Message(None, "6", "phoenix", "heartbeat", {})
    assert message.encode() == '[null,"6","phoenix","heartbeat",{}]'


def test_decode_server_push_and_reply() -> None:
    push = decode('["3",null,"call:lobby","participant_joined",{"user_id":"u-42"}]')
    assert push == Message(
        "3", None, "call:lobby", "participant_joined", {"user_id": "u-42"}
    )

    reply = decode('[null,"6","phoenix","phx_reply",{"status":"ok","response":{}}]')
    assert reply.ref == "6"
    assert reply.join_ref is None
    assert reply.payload == {"status": "ok", "response": {}}


def test_decode_round_trips_and_accepts_bytes() -> None:
    message = Message("1", "1", "room:x", "phx_join", {"name": "Bot ü"})
    assert decode(message.encode()) == message
    assert decode(message.encode().encode("utf-8")) == message


def test_decode_ignores_extra_elements_like_the_server() -> None:
    assert decode('["1","2","t","e",{},"extra"]') == Message("1", "2", "t", "e", {})


def test_decode_keeps_non_object_payloads() -> None:
    assert decode('["1","2","t","measurements_batch",[1,2]]').payload == [1, 2]


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"topic":"t","event":"e","payload":{},"ref":"1"}',
        '["1","2","t","e"]',
        '[1,"2","t","e",{}]',
        '["1",2,"t","e",{}]',
        '["1","2",null,"e",{}]',
        '["1","2","t",5,{}]',
        b"\xff\xfe",
    ],
)
def test_decode_refuses_malformed_frames(text: str | bytes) -> None:
    with pytest.raises(FrameError):
        decode(text)


def test_deep_nesting_is_a_frame_error() -> None:
    with pytest.raises(FrameTooDeep):
        decode('[null,"1","phoenix","heartbeat",' + "[" * 100_000 + "]" * 100_000 + "]")
