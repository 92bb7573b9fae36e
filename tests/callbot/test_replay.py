import pytest

from callbot.errors import SensorDataError
from callbot.sensors.measurements import Generic, Scalar, Waveform
from callbot.sensors.replay import (
    Replay,
    load_recording,
    parse_csv,
    parse_json_lines,
    play,
    write_json_lines,
)

CSV = """sensor_id,attribute_id,payload,timestamp
s1,heartrate,72,1000
s1,ecg,0.5,1004
s1,ecg,0.51,1008
s1,geolocation,"{""lat"": 52.5}",1500
s1,heartrate,73,3000
"""


def test_csv_and_json_lines_give_the_same_measurements(tmp_path):
    from_csv = parse_csv(CSV)
    assert from_csv == [
        Scalar("s1", "heartrate", 72.0, 1000),
        Waveform("s1", "ecg", (0.5,), (1004,)),
        Waveform("s1", "ecg", (0.51,), (1008,)),
        Generic("s1", "geolocation", {"lat": 52.5}, 1500),
        Scalar("s1", "heartrate", 73.0, 3000),
    ]
    jsonl = tmp_path / "rec.jsonl"
    jsonl.write_text(write_json_lines(from_csv) + "\n")
    csv_file = tmp_path / "rec.csv"
    csv_file.write_text(CSV)
    assert load_recording(jsonl) == from_csv
    assert load_recording(csv_file) == from_csv


def test_bad_recordings_name_the_line():
    with pytest.raises(SensorDataError, match="lacks columns"):
        parse_csv("sensor_id,payload\ns,1\n")
    with pytest.raises(SensorDataError, match=r"line 3: .*attribute_id"):
        parse_csv("sensor_id,attribute_id,payload,timestamp\ns,hr,1,1\ns,-x,1,2\n")
    with pytest.raises(SensorDataError, match="line 2: not JSON"):
        parse_json_lines(
            '{"sensor_id":"s","attribute_id":"hr","payload":1,"timestamp":1}\n{nope\n'
        )


def test_replay_order_and_timing_on_a_passed_in_clock():
    replay = Replay(parse_csv(CSV), start=100.0)
    assert replay.next_due() == 100.0
    assert [m.timestamp for m in replay.due(100.0)] == [1000]
    assert replay.next_due() == pytest.approx(100.004)
    assert replay.due(100.003) == []
    assert [m.timestamp for m in replay.due(100.008)] == [1004, 1008]
    assert [m.timestamp for m in replay.due(101.0)] == [1500]
    assert replay.next_due() == pytest.approx(102.0)
    assert [m.timestamp for m in replay.due(105.0)] == [3000]
    assert replay.done
    assert replay.next_due() is None
    assert replay.due(200.0) == []


def test_speed_rebase_and_loop():
    records = [Scalar("s", "hr", 60.0, 1000), Scalar("s", "hr", 61.0, 2000)]
    replay = Replay(records, start=0.0, speed=2.0, loop=True, rebase_ms=50_000)
    assert replay.due(0.0) == [Scalar("s", "hr", 60.0, 50_000)]
    assert replay.next_due() == 0.5
    assert replay.due(0.5) == [Scalar("s", "hr", 61.0, 51_000)]
    # One last gap (1 s of recording) after the end, the recording starts again.
    assert replay.next_due() == 1.0
    assert replay.due(1.6) == [
        Scalar("s", "hr", 60.0, 52_000),
        Scalar("s", "hr", 61.0, 53_000),
    ]
    assert not replay.done


def test_out_of_order_timestamps_keep_file_order():
    records = [
        Scalar("s", "hr", 1.0, 1000),
        Scalar("s", "hr", 2.0, 3000),
        Scalar("s", "hr", 3.0, 2000),
        Scalar("s", "hr", 4.0, 3500),
    ]
    replay = Replay(records, start=0.0)
    assert [m.payload for m in replay.due(2.0)] == [1.0, 2.0, 3.0]
    assert replay.next_due() == 2.5


def test_waveform_records_are_shifted_whole():
    replay = Replay([Waveform("s", "ecg", (0.1, 0.2), (10, 14))], 0.0, rebase_ms=0)
    assert replay.due(0.0) == [Waveform("s", "ecg", (0.1, 0.2), (0, 4))]


async def test_play_sleeps_until_each_record():
    now = [10.0]
    slept = []
    got = []

    async def sleep(seconds):
        slept.append(round(seconds, 6))
        now[0] += seconds

    await play(
        Replay(parse_csv(CSV), start=10.0),
        lambda b: got.append([m.timestamp for m in b]),
        clock=lambda: now[0],
        sleep=sleep,
    )

    assert got == [[1000], [1004], [1008], [1500], [3000]]
    assert slept == [0.004, 0.004, 0.492, 1.5]
