"""Real VP8 encoding: the bitrate follows the tier, and changes need no keyframe."""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import av
import numpy as np
import pytest
from aiortc.codecs.vpx import vp8_depayload

from media.encoder import (
    BROWSER_TIER_VIDEO,
    AdaptiveVp8Encoder,
    EncoderError,
    TierVideo,
    install_on_sender,
)

WIDTH, HEIGHT = 640, 480
_ROWS, _COLS = np.mgrid[0:HEIGHT, 0:WIDTH]


def moving_pattern(t: float) -> av.VideoFrame:
    """A 640x480 picture in which every region moves, so CBR needs its budget."""
    return _pattern_at(round(t * 30))


@lru_cache(maxsize=256)
def _pattern_at(tick: int) -> av.VideoFrame:
    t = tick / 30
    img = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    img[..., 0] = (_COLS + t * 120) % 256
    img[..., 1] = (_ROWS + t * 80) % 256
    img[..., 2] = (128 + 100 * np.sin((_COLS + _ROWS) / 40 + t * 3)).astype(np.uint8)
    x0 = int((t * 200) % (WIDTH - 100))
    img[200:300, x0 : x0 + 100] = 255
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    return frame.reformat(format="yuv420p")


def timed(frame: av.VideoFrame, t: float) -> av.VideoFrame:
    frame.pts = round(t * 90000)
    frame.time_base = Fraction(1, 90000)
    return frame


def is_keyframe(vp8_frame: bytes) -> bool:
    # Bit 0 of a VP8 frame's first byte is 0 on a keyframe.
    return vp8_frame[0] & 1 == 0


def encode_seconds(
    encoder: AdaptiveVp8Encoder, fps: int, start: float, seconds: float
) -> list[list[bytes]]:
    """Frames of ``seconds`` from ``start``: for each, its VP8 frames."""
    out = []
    for i in range(round(seconds * fps)):
        t = start + i / fps
        frame = timed(moving_pattern(t), t)
        out.append(
            [data for data, _ in encoder.encode_frame(frame, False, frame.pts or 0)]
        )
    return out


def bits_per_second(frames: list[list[bytes]], seconds: float) -> float:
    return sum(len(data) for group in frames for data in group) * 8 / seconds


def test_browser_tier_table() -> None:
    table = dict(BROWSER_TIER_VIDEO)
    assert table == {
        "active": TierVideo(30, 2_500_000),
        "recent": TierVideo(15, 500_000),
        "viewer": TierVideo(5, 150_000),
        "idle": TierVideo(5, 100_000),
    }


@pytest.mark.parametrize(
    ("bitrate", "fps", "seconds"),
    [
        (2_500_000, 30, 3),
        (500_000, 30, 3),
        (150_000, 30, 3),
        (100_000, 30, 3),
        (500_000, 15, 4),
        (150_000, 5, 8),
        (100_000, 5, 8),
    ],
)
def test_bitrate_within_a_quarter_of_target(
    bitrate: int, fps: int, seconds: int
) -> None:
    encoder = AdaptiveVp8Encoder(max_bitrate=bitrate)
    encode_seconds(encoder, fps, 0.0, 1.0)  # the first keyframe and rate settling

    measured = bits_per_second(encode_seconds(encoder, fps, 1.0, seconds), seconds)

    assert 0.75 * bitrate <= measured <= 1.25 * bitrate, measured
    assert encoder.keyframes == 1
    encoder.close()


def test_rate_changes_without_keyframe() -> None:
    encoder = AdaptiveVp8Encoder(max_bitrate=BROWSER_TIER_VIDEO["active"].max_bitrate)
    first = encode_seconds(encoder, 30, 0.0, 1.0)
    assert is_keyframe(first[0][0])
    assert not any(is_keyframe(data) for group in first[1:] for data in group)

    t = 1.0
    for tier in ("viewer", "recent", "idle", "active"):
        encoder.apply_tier(BROWSER_TIER_VIDEO[tier])
        fps = BROWSER_TIER_VIDEO[tier].fps
        frames = encode_seconds(encoder, fps, t, 3.0)
        t += 3.0

        assert not any(is_keyframe(data) for group in frames for data in group), tier
        settled = bits_per_second(frames[fps:], 2.0)
        target = BROWSER_TIER_VIDEO[tier].max_bitrate
        # The last two seconds at the new rate, looser for 10 frames at 5 fps.
        assert 0.6 * target <= settled <= 1.4 * target, (tier, settled)
    assert encoder.keyframes == 1
    encoder.close()


def test_aiortc_interface_remb_caps_rate_without_keyframe() -> None:
    encoder = AdaptiveVp8Encoder(max_bitrate=2_500_000)
    payload_frames = []
    for i in range(60):
        if i == 30:
            # What aiortc's sender does on a REMB from the receiver.
            encoder.target_bitrate = 300_000
        t = i / 30
        payloads, timestamp = encoder.encode(timed(moving_pattern(t), t))
        assert timestamp == round(t * 90000)
        payload_frames.append(b"".join(vp8_depayload(p) for p in payloads))

    assert encoder.target_bitrate == 300_000
    assert is_keyframe(payload_frames[0])
    assert not any(is_keyframe(frame) for frame in payload_frames[1:])

    # The tier cap still applies below the receiver's estimate.
    encoder.max_bitrate = 150_000
    assert encoder.target_bitrate == 150_000
    encoder.close()


def test_forced_keyframe_still_works() -> None:
    encoder = AdaptiveVp8Encoder()
    encode_seconds(encoder, 5, 0.0, 1.0)
    frame = timed(moving_pattern(1.0), 1.0)
    out = encoder.encode_frame(frame, True, 90000)
    assert [key for _, key in out] == [True]
    assert is_keyframe(out[0][0])
    encoder.close()


def test_install_refuses_audio_sender() -> None:
    class FakeSender:
        kind = "audio"
        _RTCRtpSender__encoder = None

    with pytest.raises(EncoderError):
        install_on_sender(FakeSender(), AdaptiveVp8Encoder())  # type: ignore[arg-type]
