"""The composite encoded once (H.264 + AAC) and muxed to MP4 and to HLS.

The MP4 is written as the call runs and gets its index moved to the front
(fast start) when it is closed; the HLS playlist and its MPEG-TS segments are
complete and playable while the call still runs. Video frames carry their
index on the composite's frame clock, so a dropped frame is a gap in the
timestamps, not a shift of everything after it.
"""

from __future__ import annotations

import fractions
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from numpy.typing import NDArray

from media.mixer import SAMPLE_RATE

logger = logging.getLogger(__name__)

PLAYLIST_NAME = "index.m3u8"


@dataclass(frozen=True)
class EncodingSettings:
    width: int = 1280
    height: int = 720
    fps: int = 15
    video_bitrate: int = 2_000_000
    audio_bitrate: int = 128_000
    preset: str = "veryfast"
    segment_seconds: float = 2.0


class CompositeOutput:
    """Encodes BGR frames and PCM, muxes to ``mp4_path`` and to ``hls_dir``."""

    def __init__(
        self,
        settings: EncodingSettings,
        mp4_path: Path,
        *,
        hls_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.mp4_path = mp4_path
        self.hls_dir = hls_dir
        self.video_frames = 0
        self.audio_samples = 0
        self.closed = False
        self._last_index = -1

        # The encoders are the MP4's streams; HLS copies their packets.
        mp4 = self._open_mp4()
        self._video_encoder, self._audio_encoder = self._add_encoders(mp4)
        mp4.start_encoding()
        self._containers: list[Any] = [mp4]
        self._video: list[Any] = [self._video_encoder]
        self._audio: list[Any] = [self._audio_encoder]
        if hls_dir is not None:
            self._open_hls(hls_dir)

    # ------------------------------------------------------------ setup

    def _open_mp4(self) -> Any:
        # Known limit: the MP4 index is written on close; a killed process leaves
        # an MP4 that does not open (the HLS segments written so far do).
        self.mp4_path.parent.mkdir(parents=True, exist_ok=True)
        return av.open(
            str(self.mp4_path), "w", format="mp4", options={"movflags": "+faststart"}
        )

    def _add_encoders(self, container: Any) -> tuple[Any, Any]:
        s = self.settings
        video = container.add_stream("libx264", rate=s.fps)
        video.width = s.width
        video.height = s.height
        video.pix_fmt = "yuv420p"
        video.bit_rate = s.video_bitrate
        video.codec_context.time_base = fractions.Fraction(1, s.fps)
        # No B-frames or lookahead (zerolatency), a keyframe per segment.
        video.codec_context.options = {
            "preset": s.preset,
            "tune": "zerolatency",
            "g": str(max(1, round(s.fps * s.segment_seconds))),
            "keyint_min": str(max(1, round(s.fps * s.segment_seconds))),
            "sc_threshold": "0",
        }
        audio = container.add_stream("aac", rate=SAMPLE_RATE)
        audio.layout = "stereo"
        audio.bit_rate = s.audio_bitrate
        return video, audio

    def _open_hls(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        container = av.open(
            str(directory / PLAYLIST_NAME),
            "w",
            format="hls",
            options={
                "hls_time": str(self.settings.segment_seconds),
                "hls_list_size": "0",
                "hls_playlist_type": "event",
                "hls_flags": "independent_segments",
                "hls_segment_filename": str(directory / "segment%05d.ts"),
            },
        )
        self._video.append(container.add_stream_from_template(self._video_encoder))
        self._audio.append(container.add_stream_from_template(self._audio_encoder))
        container.start_encoding()
        self._containers.append(container)

    # ------------------------------------------------------------ media

    def write_video(self, frame: av.VideoFrame, index: int) -> None:
        """Encode ``frame`` (yuv420p, the output's size) as frame ``index``."""
        if self.closed or index <= self._last_index:
            return
        self._last_index = index
        frame.pts = index
        frame.time_base = fractions.Fraction(1, self.settings.fps)
        self._mux(self._video_encoder.encode(frame), self._video)
        self.video_frames += 1

    def write_audio(self, samples: NDArray[np.int16]) -> None:
        """Encode the next (n, 2) int16 48 kHz samples; audio has no gaps."""
        if self.closed or len(samples) == 0:
            return
        packed = np.ascontiguousarray(samples, dtype=np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(packed, format="s16", layout="stereo")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self.audio_samples
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self.audio_samples += len(samples)
        self._mux(self._audio_encoder.encode(frame), self._audio)

    @property
    def duration(self) -> float:
        """Seconds written so far (the longer of audio and video)."""
        video = (self._last_index + 1) / self.settings.fps
        return max(video, self.audio_samples / SAMPLE_RATE)

    def close(self) -> None:
        """Flush the encoders and finalise every output; idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            self._mux(self._video_encoder.encode(None), self._video)
            self._mux(self._audio_encoder.encode(None), self._audio)
        finally:
            for container in self._containers:
                container.close()
        logger.info(
            "composite written: %d frames, %.2f s", self.video_frames, self.duration
        )

    def _mux(self, packets: list[Any], streams: list[Any]) -> None:
        for packet in packets:
            for stream in streams[1:]:
                # Muxing rescales a packet in place: each output gets a copy.
                copy = av.Packet(bytes(packet))
                copy.pts, copy.dts = packet.pts, packet.dts
                copy.duration = packet.duration
                copy.time_base = packet.time_base
                copy.is_keyframe = packet.is_keyframe
                copy.stream = stream
                stream.container.mux(copy)
            packet.stream = streams[0]
            streams[0].container.mux(packet)
