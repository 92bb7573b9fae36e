"""Overlay drawing cost: all widgets onto a 640x480 frame (budget 2 ms), and
the transcoder's per-tile cost: vitals on one tile of a 1280x720 composite.

Run: .venv/bin/python benchmarks/bench_overlays.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import av

from callbot.sensors.synthetic import SyntheticConfig, SyntheticSensor
from media.compositor import Compositor, Tile
from media.overlays.config import OverlayConfig
from media.overlays.overlay import SensorOverlay
from media.overlays.tile import TileSensorOverlay, tile_vitals
from media.planar import I420
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
    tile_costs()


def _timed(draw: Callable[[int], object], count: int = 400) -> list[float]:
    times = []
    for i in range(count):
        start = time.perf_counter()
        draw(i)
        times.append((time.perf_counter() - start) * 1000)
    return sorted(times)


def _summary(label: str, times: list[float]) -> str:
    return (
        f"{label:<34} median {statistics.median(times):.3f} ms, "
        f"p95 {times[int(len(times) * 0.95)]:.3f} ms"
    )


def tile_costs() -> None:
    """The transcoder's tile overlay: badge, sparkline and ECG strip on a tile."""
    sensor = SyntheticSensor(
        SyntheticConfig(sensor_id=SENSOR, ecg_rate_hz=500), START_MS
    )
    measurements = sensor.advance(START_MS + 60_000)
    epoch = START_MS / 1000
    planar = TileSensorOverlay(tile_vitals(SENSOR), epoch=epoch)
    planar.feed(measurements)
    # The same widgets through the seam's plain BGR hook (the whole tile
    # leaves YUV and comes back) for comparison.
    whole = TileSensorOverlay(tile_vitals(SENSOR), epoch=epoch)
    whole.feed(measurements)

    def frame(name: str) -> av.VideoFrame:
        image = PatternRenderer(name, 640, 360).render(3, 0.0)
        return av.VideoFrame.from_ndarray(image, format="bgr24").reformat(
            format="yuv420p"
        )

    alice = frame("alice")
    tiles = [Tile("alice", "alice", alice), Tile("bob", "bob", frame("bob"))]
    plain = Compositor(1280, 720)
    with_planar = Compositor(1280, 720, tile_overlays={"alice": planar})
    with_bgr = Compositor(1280, 720, tile_overlays={"alice": whole.__call__})
    print(
        f"tile overlay: {len(planar.overlay.widgets)} widgets, patch "
        f"{planar.patch(634, 356)} of a 634x356 tile (2-tile 1280x720 grid)"
    )
    base = plain.render(tiles, 50.0)
    assert base.width == 1280
    tile = I420.from_frame(alice, 634, 356)
    patch_times = _timed(lambda i: planar.draw_planar(tile, 50.0 + i / 15))
    print(_summary("draw_planar on the tile", patch_times))
    runs = {
        "composite, no overlay": plain,
        "composite, planar tile overlay": with_planar,
        "composite, BGR tile hook": with_bgr,
    }
    medians = {}
    for label, compositor in runs.items():
        times = _timed(lambda i, c=compositor: c.render(tiles, 50.0 + i / 15))
        medians[label] = statistics.median(times)
        print(_summary(label, times))
    for label in ("composite, planar tile overlay", "composite, BGR tile hook"):
        extra = medians[label] - medians["composite, no overlay"]
        print(f"per-frame cost on one tile ({label.split(', ')[1]}): {extra:.3f} ms")


if __name__ == "__main__":
    main()
