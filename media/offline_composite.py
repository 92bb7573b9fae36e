"""The call composite made afterwards, from a recorder's manifest and files.

The same tiles, layout, labels and speaking indicator as the live composite
(:mod:`media.live_composite`), on the recording's clock: each track is
decoded from its file and placed at its start offset, participants appear
between their join and leave, snapshots from the time they were taken, and
the audio tracks are mixed sample-accurately, gaps kept as silence.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from numpy.typing import NDArray

from media.compositor import Compositor, Layout
from media.mixer import SAMPLE_RATE, to_samples
from media.scene import CallScene
from media.sinks.composite_output import CompositeOutput, EncodingSettings

logger = logging.getLogger(__name__)

_CONTIGUOUS = round(0.02 * SAMPLE_RATE)
"""A frame this close to where the previous one ended follows on from it."""


@dataclass
class OfflineResult:
    duration: float
    frames: int
    participants: int
    seconds: float
    """Wall-clock seconds the transcode took."""


class _VideoReader:
    """One video file's frames, on the recording's clock, read ahead by one."""

    def __init__(self, user_id: str, path: Path, start: float) -> None:
        self.user_id = user_id
        self._container: Any = av.open(str(path))
        self._frames: Iterator[av.VideoFrame] = self._container.decode(video=0)
        self.start = start
        self._next: tuple[float, av.VideoFrame] | None = None
        self.done = False
        self._advance()

    def _advance(self) -> None:
        try:
            frame = next(self._frames)
        except (StopIteration, av.error.FFmpegError):
            self._next = None
            self.done = True
            self._container.close()
            return
        self._next = (self.start + float(frame.time or 0.0), frame)

    def close(self) -> None:
        self.done = True
        self._container.close()

    def until(self, t: float) -> tuple[float, av.VideoFrame] | None:
        """The latest frame at or before ``t``, if any came since the last call."""
        latest = None
        while self._next is not None and self._next[0] <= t:
            latest = self._next
            self._advance()
        return latest


class _AudioReader:
    """One audio file as 48 kHz stereo samples at their offsets in the call."""

    def __init__(self, path: Path, start: float) -> None:
        self._container: Any = av.open(str(path))
        self._frames: Iterator[av.AudioFrame] = self._container.decode(audio=0)
        self._resampler = av.AudioResampler(
            format="s16", layout="stereo", rate=SAMPLE_RATE
        )
        self._start = start
        self._chunks: list[tuple[int, NDArray[np.int16]]] = []
        self._end = 0  # sample offset where the last chunk ends
        self.done = False

    def _read_one(self) -> None:
        try:
            frame = next(self._frames)
        except (StopIteration, av.error.FFmpegError):
            self.done = True
            self._container.close()
            return
        offset = round((self._start + float(frame.time or 0.0)) * SAMPLE_RATE)
        if self._end and abs(offset - self._end) <= _CONTIGUOUS:
            offset = self._end
        for out in self._resampler.resample(frame):
            samples = to_samples(out)
            self._chunks.append((offset, samples))
            offset += len(samples)
        self._end = offset

    def close(self) -> None:
        self.done = True
        self._container.close()

    def add_to(self, mix: NDArray[np.int32], first: int) -> None:
        """Add this track's samples in [first, first + len(mix)) to ``mix``."""
        last = first + len(mix)
        while not self.done and self._end < last:
            self._read_one()
        kept = []
        for offset, samples in self._chunks:
            end = offset + len(samples)
            lo, hi = max(offset, first), min(end, last)
            if lo < hi:
                mix[lo - first : hi - first] += samples[lo - offset : hi - offset]
            if end > last:
                kept.append((offset, samples))
        self._chunks = kept


def _interval_at(intervals: list[tuple[float, float]], t: float) -> bool:
    return any(start <= t < end for start, end in intervals)


def transcode_recording(
    manifest_path: Path,
    output: Path,
    settings: EncodingSettings | None = None,
    *,
    hls_dir: Path | None = None,
    layout: Layout = "grid",
    stall_after: float = 1.0,
) -> OfflineResult:
    """Write the composite of the recording ``manifest_path`` describes."""
    began = time.monotonic()
    settings = settings or EncodingSettings()
    manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    directory = manifest_path.parent

    labels: dict[str, str] = {}
    presence: dict[str, tuple[float, float]] = {}
    for entry in manifest.get("participants", []):
        user_id = entry["user_id"]
        labels[user_id] = entry.get("display_name") or user_id
        joined = entry.get("joined")
        left = entry.get("left")
        presence[user_id] = (
            float(joined) if joined is not None else 0.0,
            float(left) if left is not None else math.inf,
        )

    ended_at = manifest.get("ended_at")
    tracks_end = 0.0
    videos: list[_VideoReader] = []
    audios: list[_AudioReader] = []
    for track in manifest.get("tracks", []):
        if track.get("start") is None:
            continue  # nothing was ever written
        user_id = track.get("user_id") or track["track_id"]
        labels.setdefault(user_id, user_id)
        presence.setdefault(user_id, (0.0, math.inf))
        path = directory / track["file"]
        start = float(track["start"])
        with av.open(str(path)) as probe:
            length = (probe.duration or 0) / 1_000_000
        tracks_end = max(tracks_end, start + length)
        if track["kind"] == "video":
            videos.append(_VideoReader(user_id, path, start))
        else:
            audios.append(_AudioReader(path, start))

    # The call's end where the recorder saw it; else (killed) its last media.
    if ended_at is not None:
        end = float(ended_at) - float(manifest["started_at"])
    else:
        end = tracks_end

    speaking: dict[str, list[tuple[float, float]]] = {}
    for interval in manifest.get("speaking", []):
        stop = interval.get("end")
        speaking.setdefault(interval["user_id"], []).append(
            (float(interval["start"]), float(stop) if stop is not None else math.inf)
        )
    snapshots = sorted(manifest.get("snapshots", []), key=lambda s: float(s["at"]))

    compositor = Compositor(settings.width, settings.height, layout=layout)
    scene = CallScene(stall_after=stall_after)
    out = CompositeOutput(settings, output, hls_dir=hls_dir)
    frames = max(1, math.ceil(end * settings.fps - 1e-6))
    audio_written = 0
    latest_snapshot: dict[str, bytes] = {}
    try:
        for index in range(frames):
            t = index / settings.fps
            while snapshots and float(snapshots[0]["at"]) <= t:
                snap = snapshots.pop(0)
                jpeg = (directory / snap["file"]).read_bytes()
                latest_snapshot[snap["user_id"]] = jpeg
                if snap["user_id"] in scene.participants:
                    scene.snapshot(snap["user_id"], jpeg)
            for user_id, (joined, left) in presence.items():
                if not joined <= t < left:
                    scene.left(user_id)
                elif user_id not in scene.participants:
                    scene.joined(user_id, labels[user_id])
                    if user_id in latest_snapshot:
                        scene.snapshot(user_id, latest_snapshot[user_id])
            for reader in videos:
                found = reader.until(t)
                if found is not None and reader.user_id in scene.participants:
                    scene.video(reader.user_id, found[1], found[0])
            for user_id in scene.participants:
                scene.speaking(user_id, _interval_at(speaking.get(user_id, []), t))
            out.write_video(compositor.render(scene.tiles(t), t), index)

            target = (index + 1) * SAMPLE_RATE // settings.fps
            mix = np.zeros((target - audio_written, 2), dtype=np.int32)
            for audio in audios:
                audio.add_to(mix, audio_written)
            out.write_audio(np.clip(mix, -32768, 32767).astype(np.int16))
            audio_written = target
    finally:
        out.close()
        for video in videos:
            video.close()
        for audio in audios:
            audio.close()
    result = OfflineResult(
        duration=out.duration,
        frames=out.video_frames,
        participants=len(presence),
        seconds=time.monotonic() - began,
    )
    logger.info(
        "transcoded %s to %s: %.2f s in %.2f s",
        manifest_path,
        output,
        result.duration,
        result.seconds,
    )
    return result
