from media.sinks.timeline import RtpTimeline


def test_positions_follow_rtp_clock_and_keep_gaps() -> None:
    timeline = RtpTimeline(90000)
    assert timeline.position(1000, 0.0) == 0
    assert timeline.position(4000, 0.033) == 33
    # 2 s lost: a gap of 2 s, not squeezed
    assert timeline.position(4000 + 2 * 90000, 2.1) == 2033


def test_wrap_past_2_32_continues_forward() -> None:
    timeline = RtpTimeline(90000)
    start = (1 << 32) - 45000  # 0.5 s before the wrap
    assert timeline.position(start, 0.0) == 0
    assert timeline.position((start + 90000) & 0xFFFFFFFF, 1.0) == 1000
    assert timeline.position((start + 180000) & 0xFFFFFFFF, 2.0) == 2000
    assert timeline.stats.wraps == 1


def test_duplicate_and_reordered_timestamps_become_increasing() -> None:
    timeline = RtpTimeline(90000)
    positions = [
        timeline.position(ts, i / 30)
        for i, ts in enumerate([0, 3000, 3000, 9000, 6000, 12000])
    ]
    assert positions == [0, 33, 34, 100, 101, 133]
    assert timeline.stats.non_increasing == 2


def test_reordering_across_the_wrap_stays_local() -> None:
    timeline = RtpTimeline(48000)
    top = (1 << 32) - 960
    positions = [timeline.position(ts, 0.0) for ts in (top, 0, top, 960)]
    assert positions == [0, 20, 21, 40]


def test_timestamp_reset_follows_arrival_time() -> None:
    timeline = RtpTimeline(48000)
    timeline.position(100, 0.0)
    timeline.position(1060, 0.02)
    # the sender restarts with a random timestamp 0.02 s later
    assert timeline.position(1_500_000_000, 0.04) == 40
    assert timeline.stats.resets == 1
