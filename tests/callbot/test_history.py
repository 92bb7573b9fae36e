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
