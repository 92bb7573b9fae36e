"""Snapshot cost: 320x240 JPEG q70 from the bot's outgoing frames.

Run: .venv/bin/python benchmarks/bench_snapshots.py
"""

from __future__ import annotations

import time

import av
import cv2
import numpy as np

from callbot.bot.snapshots import encode_jpeg, encode_snapshot, frame_to_bgr
from media.sources.pattern import PatternRenderer


def timed(label: str, rounds: int, work) -> None:  # type: ignore[no-untyped-def]
    work()
    start = time.perf_counter()
    for _ in range(rounds):
        result = work()
    elapsed = (time.perf_counter() - start) / rounds
    size = f" {len(result)} bytes" if isinstance(result, bytes | str) else ""
    print(f"{label:<52} {elapsed * 1000:7.2f} ms{size}")


def main() -> None:
    cv2.setNumThreads(1)
    for width, height in ((640, 480), (1280, 720)):
        image = PatternRenderer("bench", width, height).render(42, time.time())
        yuv = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)
        frame = av.VideoFrame.from_ndarray(np.asarray(yuv), format="yuv420p")
        print(f"source {width}x{height} yuv420p (the pattern source's frames)")
        timed("  frame -> BGR (PyAV)", 200, lambda f=frame: frame_to_bgr(f))
        bgr = frame_to_bgr(frame)
        timed(
            "  BGR -> 320x240 JPEG q70 (resize + imencode)",
            200,
            lambda b=bgr: encode_jpeg(b),
        )
        small = cv2.resize(bgr, (320, 240), interpolation=cv2.INTER_AREA)
        timed(
            "  320x240 BGR -> JPEG q70 (imencode only)",
            500,
            lambda s=small: encode_jpeg(s),
        )
        timed(
            "  whole snapshot (frame -> base64 payload)",
            200,
            lambda f=frame: encode_snapshot(f, 0).data,
        )


if __name__ == "__main__":
    main()
