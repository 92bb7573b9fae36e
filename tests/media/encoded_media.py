"""Real VP8 and Opus frames made in the test, as the tap would report them."""

from __future__ import annotations

import fractions
from collections.abc import Iterator

import av
import numpy as np

from callbot.rtc.tap import EncodedFrame, make_frame


def vp8_frames(
    count: int,
    width: int = 320,
    height: int = 240,
    *,
    fps: int = 30,
    keyframe_interval: int = 30,
    first_index: int = 0,
) -> Iterator[EncodedFrame]:
    """``count`` VP8 frames of a moving pattern; RTP timestamps from 0."""
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = fractions.Fraction(1, fps)
    encoder.bit_rate = 200_000
    encoder.gop_size = keyframe_interval
    encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    step = 90000 // fps
    for i in range(first_index, first_index + count):
        image = np.zeros((height, width, 3), np.uint8)
        image[:, (i * 4) % width :] = (200, 60, 30)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = i
        for packet in encoder.encode(frame.reformat(format="yuv420p")):
            ts = packet.pts * step if packet.pts is not None else i * step
            yield make_frame("video", "VP8", bytes(packet), ts)


def opus_frames(seconds: float) -> Iterator[EncodedFrame]:
    """Opus packets of a 440 Hz tone, 20 ms each; RTP timestamps from 0."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = 48000
    encoder.layout = "stereo"
    encoder.format = "s16"
    encoder.bit_rate = 32000
    samples = 960
    t = np.arange(int(seconds * 48000)) / 48000
    tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    sent = 0
    for start in range(0, len(tone) - samples + 1, samples):
        chunk = np.repeat(tone[start : start + samples], 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
        frame.sample_rate = 48000
        frame.pts = start
        for packet in encoder.encode(frame):
            yield make_frame("audio", "opus", bytes(packet), sent * samples)
            sent += 1
