"""Delta decoder speed: samples per second on synthetic ECG blobs.

Run: .venv/bin/python benchmarks/bench_delta.py
"""

from __future__ import annotations

import base64
import time

from callbot.sensors import delta
from callbot.sensors.synthetic import SyntheticConfig, SyntheticSensor


def ecg_samples(seconds: int, rate_hz: int) -> list[tuple[int, float]]:
    sensor = SyntheticSensor(SyntheticConfig(seed=1, ecg_rate_hz=rate_hz), 0)
    samples: list[tuple[int, float]] = []
    for m in sensor.advance(seconds * 1000):
        if m.attribute_id == "ecg":
            samples += list(zip(m.timestamps, m.payload, strict=True))  # type: ignore[union-attr]
    return samples


def bench(label: str, blobs: list[bytes], samples_per_blob: int) -> None:
    rounds = max(1, 200_000 // (samples_per_blob * len(blobs)))
    start = time.perf_counter()
    for _ in range(rounds):
        for blob in blobs:
            delta.decode(blob)
    elapsed = time.perf_counter() - start
    total = rounds * len(blobs) * samples_per_blob
    print(
        f"{label:<44} {total / elapsed / 1e6:7.2f} M samples/s "
        f"({elapsed / (rounds * len(blobs)) * 1e6:8.1f} us per blob)"
    )


def main() -> None:
    samples = ecg_samples(60, 250)
    # Batches as a high-attention flush carries them (64 ms at 250 Hz), as a
    # paused-minimal flush does (500 ms), and one long blob.
    for chunk, label in (
        (16, "16-sample blobs (64 ms @ 250 Hz)"),
        (125, "125-sample blobs (500 ms @ 250 Hz)"),
        (len(samples), f"one {len(samples)}-sample blob"),
    ):
        blobs = [
            delta.encode(samples[i : i + chunk])
            for i in range(0, len(samples) - chunk + 1, chunk)
        ]
        bench(label, blobs, chunk)

    # Decoding the sensor_batch item (base64 + count check) as a viewer does.
    item = delta.encode_item(samples[:125])
    start = time.perf_counter()
    n = 2000
    for _ in range(n):
        delta.decode_item(item)
    elapsed = time.perf_counter() - start
    print(
        f"{'125-sample sensor_batch items (base64)':<44} "
        f"{n * 125 / elapsed / 1e6:7.2f} M samples/s"
    )
    # Worst case for the run splitter: a reset every tenth sample.
    jumpy = [(t, v + (3.0 if i % 10 == 0 else 0.0)) for i, (t, v) in enumerate(samples)]
    bench("one blob, a reset every 10th sample", [delta.encode(jumpy)], len(jumpy))

    blob = delta.encode(samples)
    print(
        f"wire size: {len(blob)} bytes for {len(samples)} samples, "
        f"{len(base64.b64encode(blob)) / len(samples):.2f} base64 bytes per sample"
    )


if __name__ == "__main__":
    main()
