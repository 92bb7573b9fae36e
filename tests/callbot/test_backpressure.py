import pytest
from pydantic import ValidationError

from callbot.sensors.backpressure import BackpressureConfig, BatchPolicy, Send
from callbot.sensors.measurements import Generic, Scalar, Waveform

PUSH = {
    "attention_level": "medium",
    "system_load": "normal",
    "memory_protection_active": False,
    "paused": False,
    "recommended_batch_window": 500,
    "recommended_batch_size": 5,
    "load_multiplier": 1.0,
    "timestamp": 1772446530123,
}


def cfg(attention="medium", load="normal", memory=False):
    return BackpressureConfig.computed(
        attention, load, memory_protection=memory, timestamp=0
    )


def hr(value, ts):
    return Scalar("bot-hr-1", "heartrate", float(value), ts)


def ecg(start, n, step=4, base=0.0):
    return Waveform(
        "bot-hr-1",
        "ecg",
        tuple(base + i / 100 for i in range(n)),
        tuple(start + i * step for i in range(n)),
    )


def item(attribute, payload, ts):
    return {"attribute_id": attribute, "payload": payload, "timestamp": ts}


def test_parses_the_server_push_with_string_system_load():
    config = BackpressureConfig.model_validate(PUSH)
    assert config.system_load == "normal"
    assert config.recommended_batch_window == 500
    assert config == cfg().model_copy(update={"timestamp": 1772446530123})
    with pytest.raises(ValidationError):
        BackpressureConfig.model_validate({**PUSH, "attention_level": "extreme"})
    with pytest.raises(ValidationError):
        BackpressureConfig.model_validate(
            {k: v for k, v in PUSH.items() if k != "paused"}
        )


def test_computed_configs_of_the_spec():
    low_high = cfg("low", "high")
    assert (
        low_high.recommended_batch_window,
        low_high.recommended_batch_size,
        low_high.load_multiplier,
        low_high.paused,
    ) == (6000, 10, 3.0, False)
    protected = cfg("low", "high", memory=True)
    assert (
        protected.recommended_batch_window,
        protected.load_multiplier,
        protected.paused,
    ) == (30000, 15.0, True)
    assert cfg("none", "critical").paused
    assert not cfg("high", "critical", memory=True).paused
    assert cfg("medium", "elevated").recommended_batch_window == 750
    initial = BackpressureConfig.initial()
    assert (
        initial.attention_level,
        initial.recommended_batch_window,
        initial.recommended_batch_size,
    ) == ("none", 5000, 20)


def test_sends_when_the_batch_is_full():
    policy = BatchPolicy(cfg("medium"))
    sends = policy.add([hr(70, 1), hr(71, 2), hr(72, 3), hr(73, 4)], now=10.0)
    assert sends == []
    assert policy.next_deadline() == 10.5
    sends = policy.add([hr(74, 5), hr(75, 6)], now=10.1)
    assert sends == [
        Send(
            "measurements_batch",
            [
                item("heartrate", float(v), t)
                for v, t in zip(range(70, 75), range(1, 6), strict=False)
            ],
        )
    ]
    # The sixth item opened a new window at 10.1.
    assert policy.queued == 1
    assert policy.next_deadline() == pytest.approx(10.6)


def test_sends_when_the_window_passes_one_item_as_measurement():
    policy = BatchPolicy(cfg("medium"))
    assert policy.add([hr(70, 1)], now=3.0) == []
    assert policy.poll(3.499) == []
    assert policy.poll(3.5) == [Send("measurement", item("heartrate", 70.0, 1))]
    assert policy.poll(10.0) == []
    assert policy.next_deadline() is None


def test_a_waveform_is_one_item_per_sample_in_chunks_of_the_batch_size():
    policy = BatchPolicy(cfg("medium"))
    sends = policy.add([ecg(1000, 12)], now=0.0)
    assert [len(s.items) for s in sends] == [5, 5]
    assert sends[0].items[0] == item("ecg", 0.0, 1000)
    assert sends[1].items[-1] == item("ecg", 0.09, 1036)
    assert policy.queued == 2


def test_high_attention_flushes_at_once_and_sends_each_item():
    policy = BatchPolicy(cfg("low"))
    assert policy.add([hr(70, 1), hr(71, 2), hr(72, 3)], now=0.0) == []
    sends = policy.set_config(cfg("high"), now=0.2)
    assert sends == [
        Send(
            "measurements_batch", [item("heartrate", 70.0 + i, 1 + i) for i in range(3)]
        )
    ]
    assert policy.add([hr(73, 4)], now=0.3) == [
        Send("measurement", item("heartrate", 73.0, 4))
    ]


def test_a_new_config_applies_at_once():
    policy = BatchPolicy(cfg("none"))  # 5000 ms, 20
    policy.add([hr(60 + i, i) for i in range(7)], now=0.0)
    assert policy.queued == 7
    # Smaller batches: the queue is already over the new size.
    sends = policy.set_config(cfg("medium"), now=1.0)
    assert [len(s.items) for s in sends] == [7]
    # A shorter window that has already passed sends at once.
    policy.set_config(cfg("low"), now=1.0)
    policy.add([hr(80, 100)], now=1.0)
    assert policy.next_deadline() == 3.0
    sends = policy.set_config(cfg("medium", "normal"), now=2.0)
    assert sends == [Send("measurement", item("heartrate", 80.0, 100))]
    # A longer window moves the deadline out.
    policy.add([hr(81, 101)], now=2.0)
    policy.set_config(cfg("low", "high"), now=2.1)
    assert policy.next_deadline() == 8.0


def test_paused_sends_nothing_and_keeps_the_newest_values():
    policy = BatchPolicy(cfg("low"), paused_waveform_seconds=2.0)
    policy.add([hr(70, 0), ecg(0, 3)], now=0.0)
    assert policy.set_config(cfg("low", "critical"), now=0.1) == []
    assert policy.queued == 0

    # 3 s of 250 Hz ECG while paused, and three heart rates.
    sends = []
    for second in range(3):
        sends += policy.add(
            [hr(71 + second, 1000 * second + 500), ecg(1000 * second + 12, 250)],
            now=1.0 + second,
        )
        sends += policy.poll(now=1.5 + second)
    assert sends == []
    # The newest heart rate and the newest 2 s (500 samples) of ECG are kept.
    assert policy.held == 1 + 500
    assert policy.dropped == 3 + (3 + 750 - 500)

    sends = policy.set_config(cfg("low"), now=10.0)
    assert len(sends) == 1
    items = sends[0].items
    assert sends[0].event == "measurements_batch"
    assert len(items) == 501
    ecg_items = [i for i in items if i["attribute_id"] == "ecg"]
    assert ecg_items[0]["timestamp"] == 1012  # newest 3008 minus 2 s, exclusive
    assert ecg_items[-1]["timestamp"] == 2012 + 249 * 4
    assert [i for i in items if i["attribute_id"] == "heartrate"] == [
        item("heartrate", 73.0, 2500)
    ]
    assert [i["timestamp"] for i in items] == sorted(i["timestamp"] for i in items)

    # And it goes on batching as before.
    assert policy.add([hr(74, 4000)], now=10.1) == []
    assert policy.poll(12.1) == [Send("measurement", item("heartrate", 74.0, 4000))]


def test_generic_attributes_keep_their_last_value_while_paused():
    policy = BatchPolicy(cfg("none", memory=True))
    policy.add(
        [
            Generic("s", "geolocation", {"lat": 1}, 1),
            Generic("s", "geolocation", {"lat": 2}, 2),
        ],
        now=0.0,
    )
    assert policy.set_config(cfg("high"), now=1.0) == [
        Send("measurement", item("geolocation", {"lat": 2}, 2))
    ]


def test_close_flushes_only_what_is_allowed():
    policy = BatchPolicy(cfg("low"))
    policy.add([hr(70, 1), hr(71, 2)], now=0.0)
    assert policy.close(now=0.5) == [
        Send(
            "measurements_batch",
            [item("heartrate", 70.0, 1), item("heartrate", 71.0, 2)],
        )
    ]
    with pytest.raises(RuntimeError):
        policy.add([hr(72, 3)], now=0.6)

    paused = BatchPolicy(cfg("low", memory=True))
    paused.add([hr(70, 1)], now=0.0)
    assert paused.close(now=0.5) == []
