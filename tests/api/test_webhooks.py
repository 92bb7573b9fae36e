"""Webhook signatures and backoff, without a network."""

from __future__ import annotations

import hashlib
import hmac
import json

from api.record import RecordEvent
from api.webhooks import backoff, event_body, sign, verify


def event() -> RecordEvent:
    return RecordEvent(
        event_id="e-1",
        bot_id="b-1",
        type="status",
        data={"status": "in_call", "previous": "connecting"},
        ts=1764840001.5,
        seq=7,
    )


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = event_body(event())

    expected = hmac.new(b"k", b"1764840002." + body, hashlib.sha256).hexdigest()
    assert sign("k", 1764840002, body) == f"v1={expected}"


def test_the_body_is_stable_json_of_the_event() -> None:
    body = event_body(event())

    assert body == event_body(event())
    assert json.loads(body) == {
        "event_id": "e-1",
        "seq": 7,
        "bot_id": "b-1",
        "type": "status",
        "data": {"status": "in_call", "previous": "connecting"},
        "ts": 1764840001.5,
    }


def test_verify_refuses_other_keys_bodies_and_old_timestamps() -> None:
    body = event_body(event())
    signature = sign("k", 1000, body)

    assert verify("k", "1000", body, signature, now=1100.0)
    assert not verify("other", "1000", body, signature, now=1100.0)
    assert not verify("k", "1000", body + b" ", signature, now=1100.0)
    assert not verify("k", "1001", body, signature, now=1100.0)
    assert not verify("k", "1000", body, signature, now=1400.0)
    assert not verify("k", "soon", body, signature, now=1100.0)


def test_backoff_doubles_up_to_the_cap() -> None:
    delays = [backoff(n, base=1.0, cap=60.0) for n in range(1, 9)]

    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
