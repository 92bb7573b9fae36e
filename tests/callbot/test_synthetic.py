import numpy as np
import pytest
from pydantic import ValidationError

from callbot.sensors.measurements import Scalar, Waveform
from callbot.sensors.synthetic import SyntheticConfig, SyntheticSensor

START = 1_700_000_000_000


def run(config, seconds, step_ms=33):
    sensor = SyntheticSensor(config, START)
    out = []
    for now in range(START, START + seconds * 1000, step_ms):
        out += sensor.advance(now)
    out += sensor.advance(START + seconds * 1000)
    return out


def series(measurements, attribute):
    ts, vs = [], []
    for m in measurements:
        if m.attribute_id != attribute:
            continue
        if isinstance(m, Waveform):
            ts += m.timestamps
            vs += m.payload
        else:
            ts.append(m.timestamp)
            vs.append(m.payload)
    return np.array(ts), np.array(vs)


def r_peaks(ts, vs, threshold=0.6):
    inner = (vs[1:-1] > threshold) & (vs[1:-1] >= vs[:-2]) & (vs[1:-1] > vs[2:])
    return ts[1:-1][inner]


@pytest.mark.parametrize(
    ("rate_hz", "bpm"), [(250, 72.0), (500, 72.0), (360, 50.0), (250, 150.0)]
)
def test_r_r_intervals_match_the_heart_rate(rate_hz, bpm):
    config = SyntheticConfig(seed=7, ecg_rate_hz=rate_hz, heart_rate_bpm=bpm)
    out = run(config, 30)
    hr_ts, hr = series(out, "heartrate")
    ecg_ts, ecg = series(out, "ecg")

    # The ECG is sampled at the configured rate.
    assert np.diff(ecg_ts).min() >= 1000 // rate_hz
    assert np.diff(ecg_ts).max() <= -(-1000 // rate_hz)
    assert len(ecg_ts) == 30 * rate_hz + 1

    # Each reported heart rate is 60 / (its R-R interval), to the ms.
    rr_reported = np.diff(hr_ts)
    assert np.abs(rr_reported - 60000.0 / hr[1:]).max() <= 1.0

    # And the R peaks of the waveform are where the heart rate says.
    peaks = r_peaks(ecg_ts, ecg)
    assert len(peaks) == len(hr_ts)
    assert np.abs(peaks - hr_ts).max() <= 1000 / rate_hz + 1
    rr_ecg = np.diff(peaks)
    assert np.abs(rr_ecg - 60000.0 / hr[1:]).max() <= 2 * 1000 / rate_hz + 1


def test_heart_rate_varies_around_its_mean():
    _, hr = series(run(SyntheticConfig(seed=1), 120), "heartrate")
    assert abs(hr.mean() - 72.0) < 4.0
    assert 0.5 < hr.std() < 6.0
    assert np.abs(np.diff(hr)).max() < 6.0


def test_ecg_has_p_qrs_t_shape():
    out = run(
        SyntheticConfig(
            seed=2,
            ecg_noise_mv=0.0,
            heart_rate_drift_bpm=0.0,
            rsa_bpm=0.0,
            heart_rate_bpm=60.0,
        ),
        5,
    )
    ts, ecg = series(out, "ecg")
    hr_ts, _ = series(out, "heartrate")
    r = hr_ts[2]

    def at(offset_ms):
        return ecg[np.argmin(np.abs(ts - (r + offset_ms)))]

    baseline = at(-450)
    assert at(0) - baseline > 1.0  # R
    assert at(-200) - baseline > 0.1  # P
    assert at(-36) - baseline < -0.05  # Q
    assert at(36) - baseline < -0.15  # S
    assert at(300) - baseline > 0.2  # T


def test_respiration_rate():
    ts, resp = series(
        run(SyntheticConfig(seed=4, respiration_bpm=12.0), 60), "respiration"
    )
    assert np.diff(ts).max() == 40
    rising = np.count_nonzero((resp[:-1] < 0) & (resp[1:] >= 0))
    assert 11 <= rising <= 13


def test_same_seed_same_data_regardless_of_chunking():
    config = SyntheticConfig(seed=9)
    a = run(config, 5, step_ms=33)
    b = run(config, 5, step_ms=250)
    for attribute in ("heartrate", "ecg", "respiration"):
        ta, va = series(a, attribute)
        tb, vb = series(b, attribute)
        assert ta.tolist() == tb.tolist()
        assert va.tolist() == vb.tolist()
    c = run(SyntheticConfig(seed=10), 5)
    assert series(c, "ecg")[1].tolist() != series(a, "ecg")[1].tolist()


def test_advance_returns_only_new_data():
    sensor = SyntheticSensor(SyntheticConfig(seed=0), START)
    first = sensor.advance(START + 2000)
    assert sensor.advance(START + 2000) == []
    assert sensor.advance(START + 1000) == []
    later = sensor.advance(START + 2004)
    assert [m.timestamps for m in later if m.attribute_id == "ecg"] == [(START + 2004,)]
    assert all(isinstance(m, Scalar | Waveform) for m in first)


def test_ecg_rate_is_bounded():
    with pytest.raises(ValidationError):
        SyntheticConfig(ecg_rate_hz=200)
    with pytest.raises(ValidationError):
        SyntheticConfig(ecg_rate_hz=1000)
