"""Overlay drawing cost: all widgets onto a 640x480 frame (budget 2 ms).

Run: .venv/bin/python benchmarks/bench_overlays.py
"""

from __future__ import annotations

import statistics
import time

from callbot.sensors.synthetic import SyntheticConfig, SyntheticSensor
from media.overlays.config import OverlayConfig
from media.overlays.overlay import SensorOverlay
from media.sources.pattern import PatternRenderer

SENSOR = "bench-1"
START_MS = 1_772_446_530_000


def main() -> None:
    overlay = SensorOverlay(OverlayConfig.vitals(SENSOR))
    sensor = SyntheticSensor(
        SyntheticConfig(sensor_id=SENSOR, ecg_rate_hz=500), START_MS
    )
    # A minute of history: heart rate, ECG at 500 Hz, respiration at 25 Hz.
    overlay.feed(sensor.advance(START_MS + 60_000))
    base = PatternRenderer("bench", 640, 480).render(0, 0.0)

    for label, now_offset in (("live data", 60_000), ("stale data", 75_000)):
        times: list[float] = []
        for i in range(600):
            image = base.copy()
            start = time.perf_counter()
            overlay.draw(image, START_MS + now_offset + i)
            times.append((time.perf_counter() - start) * 1000)
        times.sort()
        print(
            f"{label:<11} {len(overlay.widgets)} widgets on 640x480: "
            f"median {statistics.median(times):.3f} ms, "
            f"p95 {times[int(len(times) * 0.95)]:.3f} ms, max {times[-1]:.3f} ms"
        )

    # The per-frame cost of the whole source for comparison.
    renderer = PatternRenderer("bench", 640, 480)
    start = time.perf_counter()
    for i in range(200):
        renderer.render(i, 0.0)
    print(f"pattern alone: {(time.perf_counter() - start) / 200 * 1000:.3f} ms/frame")


if __name__ == "__main__":
    main()
