"""aiortc peers for media tests: synthetic sources and a loopback handshake."""

from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection

from callbot.rtc.icepolicy import (
    IceAddressPolicy,
    install_ice_policy,
    rtc_configuration,
)

VIDEO_RATE = 90000
AUDIO_RATE = 48000


class PatternVideoTrack(MediaStreamTrack):
    """640x480 frames at 30 fps with a moving bar, paced in real time."""

    kind = "video"

    def __init__(self, width: int = 640, height: int = 480, fps: int = 30) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self._count = 0
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._count / self.fps
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        image = np.full((self.height, self.width, 3), 40, dtype=np.uint8)
        x = (self._count * 8) % self.width
        image[:, x : x + 32] = (250, 200, 20)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = self._count * (VIDEO_RATE // self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_RATE)
        self._count += 1
        return frame


class ToneAudioTrack(MediaStreamTrack):
    """A 440 Hz mono tone in 20 ms frames, paced in real time."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._samples = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._samples / AUDIO_RATE
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        n = AUDIO_RATE // 50
        t = (np.arange(n) + self._samples) / AUDIO_RATE
        pcm = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._samples
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._samples += n
        return frame


def loopback_peer() -> RTCPeerConnection:
    """A peer connection restricted to 127.0.0.1 with no ICE servers."""
    install_ice_policy(IceAddressPolicy())
    return RTCPeerConnection(rtc_configuration([]))


async def handshake(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    """Offer/answer without trickle, then wait until both are connected."""
    await offerer.setLocalDescription(await offerer.createOffer())
    assert offerer.localDescription is not None
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    assert answerer.localDescription is not None
    await offerer.setRemoteDescription(answerer.localDescription)
    await wait_for(
        lambda: offerer.connectionState == answerer.connectionState == "connected",
        10.0,
    )


async def wait_for(condition: object, timeout: float, step: float = 0.02) -> float:
    """Poll ``condition()`` until true; return the seconds it took."""
    assert callable(condition)
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(step)
    return time.monotonic() - start
