"""The Prometheus text: statuses, failures by code, start-up histograms."""

from __future__ import annotations

from api.metrics import Histogram, Metrics
from api.record import BotRecord


def record(bot_id: str) -> BotRecord:
    return BotRecord(
        bot_id,
        server_url="ws://127.0.0.1:4000/socket",
        room_id="lobby",
        user_id=bot_id,
        display_name=None,
        now=100.0,
    )


def test_histogram_buckets_are_cumulative() -> None:
    histogram = Histogram((1.0, 2.0))
    for value in (0.5, 1.5, 3.0):
        histogram.observe(value)

    assert histogram.render("t") == [
        't_bucket{le="1"} 1',
        't_bucket{le="2"} 2',
        't_bucket{le="+Inf"} 3',
        "t_sum 5.000000",
        "t_count 3",
    ]


def test_metrics_follow_records_once_each() -> None:
    metrics = Metrics()
    ok, bad = record("b-1"), record("b-2")
    ok.apply({"type": "status", "status": "connecting"}, 100.2)
    ok.apply({"type": "status", "status": "in_call"}, 100.7)
    ok.apply(
        {
            "type": "stats",
            "tracks": [
                {"direction": "inbound", "kind": "video", "frames": 3, "bytes": 900}
            ],
        },
        101.0,
    )
    bad.fail("no report from the bot for 10 s", 110.0, code="heartbeat_lost")
    for _ in range(2):
        metrics.follow(ok)
        metrics.follow(bad)

    text = metrics.render([ok, bad], draining=False)

    assert 'callbot_bots{status="in_call"} 1' in text
    assert 'callbot_bots{status="failed"} 1' in text
    assert 'callbot_bot_failures_total{code="heartbeat_lost"} 1' in text
    assert "callbot_time_to_in_call_seconds_count 1" in text
    assert 'callbot_time_to_in_call_seconds_bucket{le="1"} 1' in text
    assert 'callbot_time_to_first_frame_seconds_bucket{le="1"} 1' in text
    assert 'callbot_media_frames{direction="inbound",kind="video"} 3' in text
    assert "callbot_draining 0" in text


def test_the_warm_pool_is_a_gauge_when_there_is_one() -> None:
    metrics = Metrics()
    text = metrics.render([], draining=False, warm=(2, 1))
    assert 'callbot_warm_workers{state="ready"} 2' in text.splitlines()
    assert 'callbot_warm_workers{state="starting"} 1' in text.splitlines()
    assert "callbot_warm_workers" not in metrics.render([], draining=False)
