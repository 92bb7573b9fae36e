from callbot.sensors.history import SensorHistory
from callbot.sensors.measurements import Generic, Scalar, Waveform


def test_latest_and_window():
    history = SensorHistory(seconds=1.0)
    history.add(
        [Scalar("s", "heartrate", 70.0, 0), Scalar("s", "heartrate", 72.0, 900)]
    )
    history.add([Waveform("s", "ecg", (0.1, 0.2, 0.3), (1000, 1004, 1008))])
    history.add([Generic("s", "geolocation", {"lat": 1}, 5)])

    assert history.latest("s", "heartrate") == (900, 72.0)
    assert history.latest("s", "ecg") == (1008, 0.3)
    assert history.latest("s", "missing") is None
    assert history.latest_generic("s", "geolocation") == Generic(
        "s", "geolocation", {"lat": 1}, 5
    )
    ts, vs = history.window("s", "ecg", since_ms=1004)
    assert ts.tolist() == [1004, 1008]
    assert vs.tolist() == [0.2, 0.3]

    # Older than the span is forgotten.
    history.add([Scalar("s", "heartrate", 75.0, 1950)])
    ts, vs = history.window("s", "heartrate", since_ms=0)
    assert ts.tolist() == [1950]
    assert history.window("s", "nothing", 0)[0].size == 0


def test_long_waveform_keeps_only_the_span_across_growth():
    history = SensorHistory(seconds=2.0)
    for chunk in range(40):  # 40 chunks of 125 samples at 250 Hz: 20 s
        start = chunk * 500
        ts = tuple(start + 4 * i for i in range(125))
        history.add([Waveform("s", "ecg", tuple(float(t) for t in ts), ts)])
    ts, vs = history.window("s", "ecg", since_ms=0)
    assert ts[0] == 19_996 - 2000 and ts[-1] == 19_996
    assert vs.tolist() == [float(t) for t in ts.tolist()]
    assert history.window("s", "ecg", since_ms=19_000)[0].tolist() == list(
        range(19_000, 19_997, 4)
    )
    assert history.latest("s", "ecg") == (19_996, 19_996.0)
