import pytest

from callbot.errors import SensorDataError
from callbot.sensors import delta
from callbot.sensors.measurements import (
    AttributeKind,
    Deduplicator,
    Generic,
    Scalar,
    Waveform,
    attribute_kind,
    parse_measurement,
    parse_room_sensor,
    parse_sensor_batch,
)


def test_attribute_kinds_follow_the_server_inference():
    assert attribute_kind("heartrate") is AttributeKind.SCALAR
    assert attribute_kind("HR") is AttributeKind.SCALAR
    assert attribute_kind("bpm") is AttributeKind.SCALAR
    assert attribute_kind("ecg") is AttributeKind.WAVEFORM
    assert attribute_kind("breathing") is AttributeKind.WAVEFORM
    assert attribute_kind("geolocation") is AttributeKind.GENERIC
    assert attribute_kind("0000180d-0000") is AttributeKind.GENERIC


def test_scalar_payloads_as_numbers_and_documented_objects():
    m = parse_measurement(
        {"attribute_id": "heartrate", "payload": 72, "timestamp": 1772446530123},
        "bot-hr-1",
    )
    assert m == Scalar("bot-hr-1", "heartrate", 72.0, 1772446530123)
    m = parse_measurement(
        {
            "sensor_id": "s",
            "attribute_id": "heartrate",
            "payload": {"bpm": 61},
            "timestamp": 5,
        }
    )
    assert m == Scalar("s", "heartrate", 61.0, 5)


def test_ecg_sample_becomes_a_one_sample_waveform():
    m = parse_measurement({"attribute_id": "ecg", "payload": 0.42, "timestamp": 9}, "s")
    assert m == Waveform("s", "ecg", (0.42,), (9,))
    assert m.timestamp == 9


def test_unknown_or_misshapen_payloads_are_kept_as_generic():
    gps = {"latitude": 52.5, "longitude": 13.4}
    assert parse_measurement(
        {"attribute_id": "geolocation", "payload": gps, "timestamp": 1}, "s"
    ) == Generic("s", "geolocation", gps, 1)
    # A heart rate the typer cannot read is not dropped.
    assert parse_measurement(
        {"attribute_id": "heartrate", "payload": "fast", "timestamp": 1}, "s"
    ) == Generic("s", "heartrate", "fast", 1)
    assert parse_measurement(
        {"attribute_id": "heartrate", "payload": True, "timestamp": 1}, "s"
    ) == Generic("s", "heartrate", True, 1)


def test_invalid_measurements_raise():
    with pytest.raises(SensorDataError, match="attribute_id"):
        parse_measurement({"attribute_id": "_x", "payload": 1, "timestamp": 1}, "s")
    with pytest.raises(SensorDataError, match="without payload"):
        parse_measurement({"attribute_id": "hr", "timestamp": 1}, "s")
    with pytest.raises(SensorDataError, match="timestamp"):
        parse_measurement({"attribute_id": "hr", "payload": 1, "timestamp": "x"}, "s")
    with pytest.raises(SensorDataError, match="sensor_id"):
        parse_measurement({"attribute_id": "hr", "payload": 1, "timestamp": 1})


SPEC_BATCH = {
    "batch": {
        "bot-hr-1": {
            "heartrate": {
                "attribute_id": "heartrate",
                "payload": 72,
                "timestamp": 1772446530123,
                "sensor_id": "bot-hr-1",
            },
            "ecg": [
                {
                    "attribute_id": "ecg",
                    "payload": 0.50,
                    "timestamp": 1772446530000,
                    "sensor_id": "bot-hr-1",
                },
                {
                    "attribute_id": "ecg",
                    "payload": 0.51,
                    "timestamp": 1772446530004,
                    "sensor_id": "bot-hr-1",
                },
            ],
        },
        "polar-7": {
            "ecg": {
                "__delta_encoded__": True,
                "data": "AegDAAAAAAAAAAAAPwEKAAEKAA==",
                "sample_count": 3,
            }
        },
    }
}


def test_sensor_batch_of_the_spec():
    parsed = parse_sensor_batch(SPEC_BATCH)
    assert parsed.errors == []
    assert parsed.measurements == [
        Scalar("bot-hr-1", "heartrate", 72.0, 1772446530123),
        Waveform("bot-hr-1", "ecg", (0.5, 0.51), (1772446530000, 1772446530004)),
        Waveform("polar-7", "ecg", (0.5, 0.51, 0.52), (1000, 1010, 1020)),
    ]


def test_a_bad_item_fails_alone():
    batch = {
        "batch": {
            "a": {
                "ecg": {
                    "__delta_encoded__": True,
                    "data": "AugDAAAAAAAAAAAAPw==",
                    "sample_count": 1,
                },
                "respiration": delta.encode_item([(0, 0.2), (40, 0.25)]),
            },
            "b": {
                "ecg": {
                    "__delta_encoded__": True,
                    "data": "AegDAAAAAAAAAAAAPwEKAAEK",
                    "sample_count": 3,
                },
                "heartrate": {"payload": 64, "timestamp": 7},
            },
        }
    }
    parsed = parse_sensor_batch(batch)
    assert [(e.sensor_id, e.attribute_id) for e in parsed.errors] == [
        ("a", "ecg"),
        ("b", "ecg"),
    ]
    assert "header 0x02" in parsed.errors[0].reason
    assert "truncated" in parsed.errors[1].reason
    assert parsed.measurements == [
        Waveform(
            "a", "respiration", (0.20000000298023224, 0.25000000298023224), (0, 40)
        ),
        Scalar("b", "heartrate", 64.0, 7),
    ]


def test_room_sensor_last_values():
    sensor = {
        "sensor_id": "bot-hr-1",
        "attributes": [
            {
                "id": "heartrate",
                "last_value": {"payload": 72, "timestamp": 1772446530123},
            },
            {"id": "battery", "last_value": None},
        ],
    }
    parsed = parse_room_sensor(sensor)
    assert parsed.measurements == [Scalar("bot-hr-1", "heartrate", 72.0, 1772446530123)]
    assert (
        parse_room_sensor(
            {"sensor_id": "x", "sensor_name": "Unknown", "attributes": []}
        ).measurements
        == []
    )


def test_deduplicator_drops_the_doubled_push_only():
    dedup = Deduplicator()
    first = parse_sensor_batch(SPEC_BATCH).measurements
    again = parse_sensor_batch(SPEC_BATCH).measurements
    assert dedup.filter(first) == first
    assert dedup.filter(again) == []
    assert dedup.duplicates == 3

    # Same time, other value: a new measurement. Same value later: also new.
    assert dedup.accept(Scalar("bot-hr-1", "heartrate", 73.0, 1772446530123))
    assert dedup.accept(Scalar("bot-hr-1", "heartrate", 72.0, 1772446531123))
    gps = Generic("s", "geolocation", {"lat": 1, "lon": 2}, 1)
    assert dedup.accept(gps)
    assert not dedup.accept(Generic("s", "geolocation", {"lon": 2, "lat": 1}, 1))


def test_deduplicator_memory_is_bounded():
    dedup = Deduplicator(capacity=2)
    a, b, c = (Scalar("s", "hr", 60.0, t) for t in (1, 2, 3))
    assert dedup.filter([a, b, c]) == [a, b, c]
    assert dedup.filter([c, b]) == []
    assert dedup.accept(a)  # forgotten after two newer ones
