"""The live composite of a call, paced to real time in a worker thread.

Frames, audio, snapshots and roster changes come in from any thread (the
bot's event loop, on its hot path, so each call only stores a reference);
the worker thread renders the composite on a fixed frame clock, mixes the
audio and encodes both. When rendering falls behind, frames are dropped
(their timestamps are skipped), never queued, so the output stays in step
with the call.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import av

from media.compositor import Compositor, Layout, TileOverlay
from media.mixer import SAMPLE_RATE, AudioMixer
from media.scene import CallScene
from media.sinks.composite_output import CompositeOutput, EncodingSettings

logger = logging.getLogger(__name__)


@dataclass
class CompositeStats:
    frames: int = 0
    dropped: int = 0
    busy: float = 0.0
    """Seconds the worker spent rendering, mixing and encoding."""
    cpu: float = 0.0
    """CPU seconds of that work in the worker thread (the encoder's own
    threads not counted); far below ``busy``, the worker waited for a core."""
    duration: float = 0.0
    """Seconds of composite written."""

    @property
    def real_time_factor(self) -> float:
        """Processing seconds per second of composite; below 1.0 keeps up."""
        return self.busy / self.duration if self.duration else 0.0


class LiveComposite:
    """Renders, mixes and encodes the call into an MP4 and HLS as it happens.

    Args:
        stall_after: seconds without a new frame after which a participant's
            video counts as stalled and their snapshot is shown.
        max_lag: seconds the composite may fall behind and catch up; beyond
            that, overdue frames are dropped.
    """

    def __init__(
        self,
        settings: EncodingSettings,
        mp4_path: Path,
        *,
        hls_dir: Path | None = None,
        layout: Layout = "grid",
        stall_after: float = 1.0,
        max_lag: float = 1.0,
        tile_overlays: Mapping[str, TileOverlay] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.mp4_path = mp4_path
        self.hls_dir = hls_dir
        self.compositor = Compositor(
            settings.width, settings.height, layout=layout, tile_overlays=tile_overlays
        )
        self.scene = CallScene(stall_after=stall_after)
        self.mixer = AudioMixer()
        self.stats = CompositeStats()
        self.max_lag = max_lag
        self.error: Exception | None = None
        """Why the worker thread stopped early, if it did."""
        self._clock = clock
        self._lock = threading.Lock()
        # None in place of a frame: that participant left.
        self._audio: collections.deque[tuple[str, av.AudioFrame | None]] = (
            collections.deque()
        )
        self._output: CompositeOutput | None = None
        self._start: float | None = None
        self._next_index = 0
        self._audio_written = 0
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # ------------------------------------------------------------ input

    def participant_joined(self, user_id: str, display_name: str | None) -> None:
        with self._lock:
            self.scene.joined(user_id, display_name)

    def participant_left(self, user_id: str) -> None:
        with self._lock:
            self.scene.left(user_id)
        self._audio.append((user_id, None))

    def video_frame(self, user_id: str, frame: av.VideoFrame) -> None:
        # Known limit: frames are placed by arrival time, not RTP/RTCP time, so
        # lip sync is as good as the bot's receive path (audio ~60 ms later).
        now = self._clock()
        with self._lock:
            self.scene.video(user_id, frame, now)

    def video_ended(self, user_id: str) -> None:
        with self._lock:
            self.scene.video_ended(user_id)

    def audio_frame(self, user_id: str, frame: av.AudioFrame) -> None:
        self._audio.append((user_id, frame))

    def snapshot(self, user_id: str, jpeg: bytes) -> None:
        with self._lock:
            self.scene.snapshot(user_id, jpeg)

    def speaking(self, user_id: str, speaking: bool) -> None:
        with self._lock:
            self.scene.speaking(user_id, speaking)

    def set_tile_overlay(self, user_id: str, overlay: TileOverlay | None) -> None:
        """Draw ``overlay`` onto ``user_id``'s tile (None removes it)."""
        with self._lock:
            if overlay is None:
                self.compositor.tile_overlays.pop(user_id, None)
            else:
                self.compositor.tile_overlays[user_id] = overlay

    # ------------------------------------------------------------ pacing

    def open(self, now: float) -> None:
        """Open the outputs; ``now`` is the composite's time zero."""
        if self._output is None:
            self._output = CompositeOutput(
                self.settings, self.mp4_path, hls_dir=self.hls_dir
            )
            self._start = now

    def tick(self, now: float) -> bool:
        """Write the next frame if it is due at ``now``.

        Up to ``max_lag`` behind, the overdue frame is written (the caller
        ticks again at once to catch up); further behind, the overdue frames
        are dropped and the one due now is written. Returns False when no
        frame was due yet.
        """
        output = self._output
        if output is None or self._start is None:
            return False
        fps = self.settings.fps
        due = int((now - self._start) * fps + 1e-6)
        if due < self._next_index:
            return False
        started, cpu = time.perf_counter(), time.thread_time()
        index = self._next_index
        if due - index > self.max_lag * fps:
            self.stats.dropped += due - index
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("composite behind: %d frames dropped", due - index)
            index = due

        # The tiles hold references to the latest frames; rendering them
        # outside the lock keeps the bot's frame delivery from waiting.
        with self._lock:
            tiles = self.scene.tiles(now)
        frame = self.compositor.render(tiles, index / fps)
        output.write_video(frame, index)
        self._mix_audio(output, index + 1)

        self._next_index = index + 1
        self.stats.frames += 1
        self.stats.duration = output.duration
        self.stats.busy += time.perf_counter() - started
        self.stats.cpu += time.thread_time() - cpu
        return True

    def next_due(self) -> float | None:
        """When the next frame is due, on the clock given to :meth:`open`."""
        if self._start is None:
            return None
        return self._start + self._next_index / self.settings.fps

    def _mix_audio(self, output: CompositeOutput, frames_done: int) -> None:
        while self._audio:
            user_id, frame = self._audio.popleft()
            if frame is None:
                self.mixer.remove(user_id)
            else:
                self.mixer.push_frame(user_id, frame)
        target = frames_done * SAMPLE_RATE // self.settings.fps
        count = target - self._audio_written
        if count > 0:
            output.write_audio(self.mixer.pull(count))
            self._audio_written = target

    def close(self) -> CompositeStats:
        """Finalise the outputs (MP4 index to the front, playlist ended)."""
        if self._output is not None:
            self._output.close()
            self.stats.duration = self._output.duration
        return self.stats

    # ------------------------------------------------------------ thread

    def start(self) -> None:
        """Open the outputs now and render in a worker thread until :meth:`stop`."""
        self.open(self._clock())
        self._thread = threading.Thread(
            target=self._run, name="live-composite", daemon=True
        )
        self._thread.start()

    def stop(self) -> CompositeStats:
        """Render up to now, stop the worker and finalise; blocks until done."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        else:
            self.close()
        return self.stats

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self.tick(self._clock())
                due = self.next_due()
                assert due is not None
                self._stopping.wait(max(0.0, due - self._clock()))
            self.tick(self._clock())
        except Exception as exc:
            self.error = exc
            logger.exception("live composite failed; the output is closed")
        finally:
            self.close()
