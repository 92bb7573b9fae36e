"""Viewer path speed: ``sensor_batch`` pushes to typed measurements per second.

Includes base64, the delta decoder, typing into waveforms and de-duplication,
as :class:`ViewerStream` does for each push.
Run: .venv/bin/python benchmarks/bench_viewer.py
"""

from __future__ import annotations

import time

from callbot.sensors import delta
from callbot.sensors.synthetic import SyntheticConfig, SyntheticSensor
from callbot.sensors.viewer import ViewerStream


def main() -> None:
    sensor = SyntheticSensor(SyntheticConfig(seed=2, ecg_rate_hz=250), 0)
    ecg = next(m for m in sensor.advance(120_000) if m.attribute_id == "ecg")
    samples = list(zip(ecg.timestamps, ecg.payload, strict=True))  # type: ignore[union-attr]
    for chunk, label in ((16, "high (64 ms)"), (125, "minimal (500 ms)")):
        pushes = [
            {"batch": {"polar-7": {"ecg": delta.encode_item(samples[i : i + chunk])}}}
            for i in range(0, len(samples) - chunk + 1, chunk)
        ]
        stream = ViewerStream()
        start = time.perf_counter()
        for push in pushes:
            stream.receive(push)
        elapsed = time.perf_counter() - start
        count = len(pushes) * chunk
        print(
            f"delta pushes, {label:<17} {count / elapsed / 1e6:6.2f} M samples/s"
            f" ({elapsed / len(pushes) * 1e6:6.1f} us per push)"
        )


if __name__ == "__main__":
    main()
