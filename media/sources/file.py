"""An audio file (WAV, Ogg, anything FFmpeg reads) as an audio track, looped.

The file is decoded once, at construction, to 48 kHz mono 16-bit and then
sent in 20 ms frames, paced like :class:`media.sources.tone.ToneTrack`. Not
looped, silence follows the end of the file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray

from media.sources.tone import (
    FRAME_SAMPLES,
    SAMPLE_RATE,
    PacedAudioTrack,
    mono_frame,
)

logger = logging.getLogger(__name__)


class AudioFileError(ValueError):
    """The file cannot be read as audio."""


def read_audio(path: str | Path) -> NDArray[np.int16]:
    """All of ``path``'s first audio stream as 48 kHz mono int16 samples."""
    # Known limit: the whole file is decoded into memory (meant for clips).
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise AudioFileError(f"cannot open {path}: {exc}") from exc
    chunks: list[NDArray[np.int16]] = []
    with container:
        if not container.streams.audio:
            raise AudioFileError(f"{path} has no audio stream")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        try:
            for frame in container.decode(audio=0):
                frame.pts = None
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1).astype(np.int16))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1).astype(np.int16))
        except av.error.FFmpegError as exc:
            raise AudioFileError(f"cannot decode {path}: {exc}") from exc
    if not chunks:
        raise AudioFileError(f"{path} holds no audio samples")
    return np.concatenate(chunks)


class FileAudioTrack(PacedAudioTrack):
    """48 kHz mono 20 ms frames of an audio file; looped unless ``loop`` is off."""

    kind = "audio"

    def __init__(
        self,
        path: str | Path,
        *,
        loop: bool = True,
        clock: Callable[[], float] = time.monotonic,
        samples: NDArray[np.int16] | None = None,
    ) -> None:
        """Args:
        samples: the file's samples already read with :func:`read_audio`
            (a bot reuses them for every new endpoint).
        """
        super().__init__(clock)
        self.path = Path(path)
        self.loop = loop
        self.samples = read_audio(path) if samples is None else samples
        logger.debug(
            "audio file %s: %.1f s%s",
            self.path.name,
            len(self.samples) / SAMPLE_RATE,
            ", looped" if loop else "",
        )

    @property
    def duration(self) -> float:
        """Length of the file in seconds."""
        return len(self.samples) / SAMPLE_RATE

    def frame(self, index: int) -> av.AudioFrame:
        """Audio frame ``index`` (pure): the file's samples, wrapped or silence."""
        total = len(self.samples)
        start = index * FRAME_SAMPLES
        if self.loop:
            positions = (start + np.arange(FRAME_SAMPLES)) % total
            chunk = self.samples[positions]
        else:
            chunk = np.zeros(FRAME_SAMPLES, dtype=np.int16)
            part = self.samples[start : start + FRAME_SAMPLES]
            chunk[: len(part)] = part
        return mono_frame(chunk, index)

    def next_frame(self, index: int) -> av.AudioFrame:
        return self.frame(index)
