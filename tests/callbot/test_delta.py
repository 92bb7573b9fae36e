import base64
import itertools
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callbot.errors import SensorDataError
from callbot.sensors import delta

VECTORS = [
    (
        [(1000, 0.5), (1010, 0.51), (1020, 0.52)],
        "01 e8 03 00 00 00 00 00 00 00 00 00 3f 01 0a 00 01 0a 00",
        "AegDAAAAAAAAAAAAPwEKAAEKAA==",
        [(1000, 0.5), (1010, 0.51), (1020, 0.52)],
    ),
    (
        [(1000, 0.0), (1010, 2.0)],
        "01 e8 03 00 00 00 00 00 00 00 00 00 00 80 00 00 00 40 0a 00",
        "AegDAAAAAAAAAAAAAIAAAABACgA=",
        [(1000, 0.0), (1010, 2.0)],
    ),
    (
        [
            (1700000000000, -0.25),
            (1700000000004, -0.3),
            (1700000000008, -0.3),
            (1700000000012, 1.5),
            (1700000000016, 1.45),
        ],
        "01 00 68 e5 cf 8b 01 00 00 00 00 80 be fb 04 00 00 04 00"
        " 80 00 00 c0 3f 04 00 fb 04 00",
        "AQBo5c+LAQAAAACAvvsEAAAEAIAAAMA/BAD7BAA=",
        [
            (1700000000000, -0.25),
            (1700000000004, -0.3),
            (1700000000008, -0.3),
            (1700000000012, 1.5),
            (1700000000016, 1.45),
        ],
    ),
    (
        [(5000, 0.1), (5002, 0.11), (5001, 0.12)],
        "01 88 13 00 00 00 00 00 00 cd cc cc 3d 01 02 00 01 00 00",
        "AYgTAAAAAAAAzczMPQECAAEAAA==",
        [
            (5000, 0.10000000149011612),
            (5002, 0.11000000149011611),
            (5002, 0.12000000149011611),
        ],
    ),
]


@pytest.mark.parametrize(("samples", "hex_bytes", "b64", "decoded"), VECTORS)
def test_spec_vectors_encode_byte_for_byte(samples, hex_bytes, b64, decoded):
    blob = delta.encode(samples)
    assert blob == bytes.fromhex(hex_bytes)
    assert base64.b64encode(blob).decode() == b64


@pytest.mark.parametrize(("samples", "hex_bytes", "b64", "decoded"), VECTORS)
def test_spec_vectors_decode_exactly(samples, hex_bytes, b64, decoded):
    assert delta.decode(base64.b64decode(b64)).pairs() == decoded


def test_vector_one_as_sensor_batch_item():
    item = delta.encode_item([(1000, 0.5), (1010, 0.51), (1020, 0.52)])
    assert item == {
        "__delta_encoded__": True,
        "data": "AegDAAAAAAAAAAAAPwEKAAEKAA==",
        "sample_count": 3,
    }
    assert delta.decode_item(item).pairs() == [(1000, 0.5), (1010, 0.51), (1020, 0.52)]


def test_erlang_round_is_half_away_from_zero():
    assert [delta.erlang_round(x) for x in (0.5, 1.5, 2.5, -0.5, -2.5)] == [
        1,
        2,
        3,
        -1,
        -3,
    ]
    assert delta.erlang_round(0.49999999999999994) == 0
    assert delta.erlang_round(-126.4) == -126


def test_half_quantum_delta_rounds_away_from_zero():
    # 0.125 / 0.01 is 12.5 exactly: Python's round would give 12 and -12.
    assert delta.encode([(0, 0.0), (1, 0.125)])[13] == 13
    assert struct.unpack_from("<b", delta.encode([(0, 0.0), (1, -0.125)]), 13) == (-13,)


def test_delta_of_127_is_normal_and_128_is_a_reset():
    blob = delta.encode([(0, 0.0), (1, 1.27), (2, 2.55)])
    assert blob[13] == 127
    assert blob[16] == 0x80
    assert struct.unpack_from("<f", blob, 17)[0] == pytest.approx(2.55)
    assert delta.erlang_round(-1.28 / 0.01) == -128
    blob = delta.encode([(0, 0.0), (1, -1.28)])
    assert blob[13] == 0x80


def test_time_deltas_are_clamped():
    blob = delta.encode([(0, 0.0), (70000, 0.0), (60000, 0.0)])
    assert struct.unpack_from("<H", blob, 14)[0] == 65535
    assert struct.unpack_from("<H", blob, 17)[0] == 0
    assert delta.decode(blob).timestamps.tolist() == [0, 65535, 65535]


def test_dt_byte_0x80_is_not_taken_for_a_reset():
    samples = [(0, 0.0), (128, 0.01), (256, 0.02), (384, 5.0), (512, 5.01)]
    blob = delta.encode(samples)
    assert blob[14] == 0x80
    decoded = delta.decode(blob)
    assert decoded.timestamps.tolist() == [0, 128, 256, 384, 512]
    assert decoded.values.tolist() == pytest.approx([0.0, 0.01, 0.02, 5.0, 5.01])


def test_encoder_refuses_what_the_server_cannot_encode():
    with pytest.raises(SensorDataError, match="at least 2"):
        delta.encode([(0, 1.0)])
    with pytest.raises(SensorDataError, match=r"sample 1.*not a number"):
        delta.encode([(0, 1.0), (1, "0.5")])  # type: ignore[list-item]
    with pytest.raises(SensorDataError, match=r"sample 1.*not a number"):
        delta.encode([(0, 1.0), (1, True)])
    with pytest.raises(SensorDataError, match="not finite"):
        delta.encode([(0, 1.0), (1, float("nan"))])
    with pytest.raises(SensorDataError, match="timestamp"):
        delta.encode([(0.5, 1.0), (1, 1.0)])  # type: ignore[list-item]


def test_decoder_errors_name_the_problem():
    good = bytes.fromhex("01e80300000000000000000000800000004" + "00a00")
    assert delta.decode(good).pairs() == [(1000, 0.0), (1010, 2.0)]

    with pytest.raises(SensorDataError, match="header 0x02"):
        delta.decode(b"\x02" + good[1:])
    with pytest.raises(SensorDataError, match="header 0x11"):
        delta.decode(b"\x11" + good[1:])
    with pytest.raises(SensorDataError, match="truncated: 5 bytes"):
        delta.decode(good[:5])
    with pytest.raises(SensorDataError, match="truncated inside a reset"):
        delta.decode(good[:-1])
    vector1 = base64.b64decode("AegDAAAAAAAAAAAAPwEKAAEKAA==")
    with pytest.raises(SensorDataError, match="truncated: 2 stray bytes"):
        delta.decode(vector1[:-1])
    nan_reset = good[:14] + struct.pack("<f", float("nan")) + good[18:]
    with pytest.raises(SensorDataError, match="not a number"):
        delta.decode(nan_reset)
    nan_first = good[:9] + struct.pack("<f", float("inf")) + good[13:]
    with pytest.raises(SensorDataError, match="first value"):
        delta.decode(nan_first)


def test_decode_item_checks_base64_and_count():
    with pytest.raises(SensorDataError, match="not base64"):
        delta.decode_item({"__delta_encoded__": True, "data": "!!!", "sample_count": 1})
    with pytest.raises(SensorDataError, match="says 4 samples, blob holds 3"):
        delta.decode_item(
            {
                "__delta_encoded__": True,
                "data": "AegDAAAAAAAAAAAAPwEKAAEKAA==",
                "sample_count": 4,
            }
        )


def test_single_sample_blob_decodes_to_its_header():
    blob = struct.pack("<Bqf", 1, 42, 0.75)
    assert delta.decode(blob).pairs() == [(42, 0.75)]


ecg_values = st.floats(min_value=-5.0, max_value=5.0, allow_nan=False)
ecg = st.lists(
    st.tuples(st.integers(min_value=0, max_value=70_000), ecg_values),
    min_size=2,
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(ecg, st.integers(min_value=0, max_value=2_000_000_000_000))
def test_round_trip_of_random_ecg(steps, start):
    timestamps = []
    t = start
    for dt, _ in steps:
        t += dt
        timestamps.append(t)
    samples = [(ts, v) for ts, (_, v) in zip(timestamps, steps, strict=True)]

    decoded = delta.decode(delta.encode(samples))

    assert len(decoded) == len(samples)
    # Each value within half a quantum, plus the float32 rounding of the
    # first value and of reset values, which later deltas carry along (at
    # most 2.4e-7 for |v| <= 5 mV).
    error = np.abs(decoded.values - np.array([v for _, v in samples]))
    assert float(error.max()) <= 0.005 + 1e-6
    expected_ts = [samples[0][0]]
    for (a, _), (b, _) in itertools.pairwise(samples):
        expected_ts.append(expected_ts[-1] + min(max(b - a, 0), 65535))
    assert decoded.timestamps.tolist() == expected_ts


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 65535), st.integers(-127, 127)),
        min_size=1,
        max_size=200,
    )
)
def test_decoder_matches_a_plain_sequential_decoder(entries):
    blob = struct.pack("<Bqf", 1, 10, 0.5) + b"".join(
        (b"\x80" + struct.pack("<fH", d / 7.0, dt))
        if d == 127
        else struct.pack("<bH", d, dt)
        for dt, d in entries
    )
    t, v = 10, float(np.float32(0.5))
    expected = [(t, v)]
    for dt, d in entries:
        v = float(np.float32(d / 7.0)) if d == 127 else v + d * 0.01
        t += dt
        expected.append((t, v))
    assert delta.decode(blob).pairs() == expected
