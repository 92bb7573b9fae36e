"""What QA measures per remote track and per participant (sans-I/O).

Every method takes the wall-clock time of the observation (``now``, seconds);
reports give times relative to ``origin`` (the start of the QA run).

Glass-to-glass latency is the receive time of a decoded frame minus the send
time the publisher drew into it (:mod:`media.markers.framecode`), and for
audio the onset of a received beep minus the wall-clock second it was sent
at. Both ends read their own wall clock: the figures are exact only when
publisher and QA bot share a clock (one machine, or NTP-synchronised hosts,
where the clocks' offset adds to every figure).
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from callbot.bot.speaking import SpeakingDetector, make_detector
from callbot.rtc.rtpwatch import RtpWatch
from media.markers.beeps import BeepDetector, nominal_beep_time
from media.markers.framecode import FrameCode, unwrap_counter, unwrap_sent_ms

FREEZE_GAP = 0.3
"""A gap between two new video frames longer than this is a freeze (s)."""


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass
class Freeze:
    start: float
    duration: float


@dataclass
class WireSeries:
    """RTP-level samples of one track: bitrate, loss, jitter over time."""

    samples: list[dict[str, float]] = field(default_factory=list)
    _last_bytes: int = 0
    _last_at: float | None = None

    def sample(self, at: float, watch: RtpWatch) -> None:
        """Add a sample ``at`` seconds into the run from ``watch``'s counters."""
        counts = watch.tracker.counts()
        bitrate = 0.0
        if self._last_at is not None and at > self._last_at:
            bitrate = (watch.bytes - self._last_bytes) * 8 / (at - self._last_at)
        self._last_bytes, self._last_at = watch.bytes, at
        self.samples.append(
            {
                "at": round(at, 3),
                "bitrate": round(bitrate),
                "wire_loss": round(counts.wire_loss, 5),
                "loss": round(counts.loss, 5),
                "jitter_ms": round(watch.jitter * 1000, 2),
                # Cumulative counts, so that any window's loss can be worked out.
                "expected": counts.expected,
                "wire_lost": counts.wire_lost,
                "lost": counts.lost,
            }
        )


class TrackMetrics:
    """Common to video and audio tracks: identity, timing, RTP counters."""

    def __init__(
        self, track_id: str, kind: str, user_id: str | None, origin: float
    ) -> None:
        self.track_id = track_id
        self.kind = kind
        self.user_id = user_id
        self.origin = origin
        self.added_at: float | None = None
        self.first_frame_at: float | None = None
        self.last_frame_at: float | None = None
        self.ended_at: float | None = None
        self.frames = 0
        self.encoded_bytes = 0
        self.watch: RtpWatch | None = None
        self.wire = WireSeries()

    def at(self, now: float) -> float:
        return now - self.origin

    def added(self, now: float) -> None:
        self.added_at = self.at(now)

    def ended(self, now: float) -> None:
        if self.ended_at is None:
            self.ended_at = self.at(now)

    def _frame_seen(self, now: float) -> None:
        self.frames += 1
        if self.first_frame_at is None:
            self.first_frame_at = self.at(now)
        self.last_frame_at = self.at(now)

    def sample_wire(self, now: float) -> None:
        if self.watch is not None:
            self.wire.sample(self.at(now), self.watch)

    def wire_summary(self) -> dict[str, Any]:
        """Bitrate, loss before and after repair, jitter; None where unmeasured."""
        if self.watch is None:
            seconds = self._seconds()
            return {
                "bitrate": round(self.encoded_bytes * 8 / seconds) if seconds else None,
                "packets_expected": None,
                "wire_lost": None,
                "wire_loss": None,
                "lost_after_repair": None,
                "loss": None,
                "repaired": None,
                "jitter_ms": None,
            }
        counts = self.watch.tracker.counts()
        seconds = self._seconds()
        rates = [s["bitrate"] for s in self.wire.samples[1:]]
        return {
            "bitrate": round(statistics.mean(rates))
            if rates
            else (round(self.watch.bytes * 8 / seconds) if seconds else None),
            "packets_expected": counts.expected,
            "wire_lost": counts.wire_lost,
            "wire_loss": round(counts.wire_loss, 5),
            "lost_after_repair": counts.lost,
            "loss": round(counts.loss, 5),
            "repaired": counts.repaired,
            "jitter_ms": round(self.watch.jitter * 1000, 2),
        }

    def _seconds(self) -> float:
        if self.first_frame_at is None or self.last_frame_at is None:
            return 0.0
        return self.last_frame_at - self.first_frame_at

    def summary(self) -> dict[str, Any]:
        return self.base_summary()

    def first_packet_at(self) -> float | None:
        """When the first RTP packet arrived (s into the run), if watched."""
        if self.watch is None or self.watch.first_packet_at is None:
            return None
        return self.watch.first_packet_at - self.origin

    def base_summary(self) -> dict[str, Any]:
        return {
            "track_id": self.track_id,
            "kind": self.kind,
            "user_id": self.user_id,
            "added_at": _round(self.added_at),
            "first_packet_at": _round(self.first_packet_at()),
            "first_frame_at": _round(self.first_frame_at),
            "ended_at": _round(self.ended_at),
            "frames": self.frames,
            "wire": self.wire_summary(),
            "wire_series": self.wire.samples,
        }


class VideoMetrics(TrackMetrics):
    """Frame rate, freezes, skipped/repeated frames, sizes, latency of a video track."""

    def __init__(self, track_id: str, user_id: str | None, origin: float) -> None:
        super().__init__(track_id, "video", user_id, origin)
        self.per_second: Counter[int] = Counter()
        self.freezes: list[Freeze] = []
        self.sizes: list[dict[str, Any]] = []
        self.latencies: list[tuple[float, float]] = []
        self.coded_frames = 0
        self.skipped = 0
        self.repeated = 0
        self._counter: int | None = None
        self._last_new: float | None = None

    def frame(
        self, now: float, width: int, height: int, code: FrameCode | None
    ) -> None:
        """A decoded frame of ``width`` x ``height`` arrived; ``code`` if it had one."""
        at = self.at(now)
        self._frame_seen(now)
        if not self.sizes or (self.sizes[-1]["width"], self.sizes[-1]["height"]) != (
            width,
            height,
        ):
            self.sizes.append({"at": round(at, 3), "width": width, "height": height})

        if code is not None:
            self.coded_frames += 1
            counter = unwrap_counter(code.counter, self._counter)
            if self._counter is not None:
                if counter == self._counter:
                    self.repeated += 1
                    return  # the same picture again: no new frame
                if counter > self._counter + 1:
                    self.skipped += counter - self._counter - 1
            if self._counter is None or counter > self._counter:
                self._counter = counter
            sent_ms = unwrap_sent_ms(code.sent_ms, round(now * 1000))
            self.latencies.append((at, now - sent_ms / 1000))

        self.per_second[int(at)] += 1
        # Known limit: a freeze still running when the track or run ends is not counted.
        if self._last_new is not None and at - self._last_new > FREEZE_GAP:
            self.freezes.append(Freeze(self._last_new, at - self._last_new))
        self._last_new = at

    def fps_series(self) -> list[dict[str, float]]:
        """Frames per whole second; the first and last (partial) seconds left out."""
        if not self.per_second:
            return []
        first, last = min(self.per_second), max(self.per_second)
        return [
            {"at": float(s), "fps": float(self.per_second.get(s, 0))}
            for s in range(first + 1, last)
        ]

    def latency_series(self) -> list[dict[str, float]]:
        """Median latency (ms) per whole second."""
        by_second: dict[int, list[float]] = {}
        for at, latency in self.latencies:
            by_second.setdefault(int(at), []).append(latency)
        return [
            {"at": float(s), "latency_ms": round(statistics.median(v) * 1000, 1)}
            for s, v in sorted(by_second.items())
        ]

    def median_latency(self) -> float | None:
        return _median([latency for _, latency in self.latencies])

    def summary(self) -> dict[str, Any]:
        report = self.base_summary()
        fps = [s["fps"] for s in self.fps_series()]
        seconds = self._seconds()
        new_frames = sum(self.per_second.values())
        latency = [latency * 1000 for _, latency in self.latencies]
        report.update(
            {
                "pattern": self.coded_frames > 0,
                "fps": {
                    "mean": round((new_frames - 1) / seconds, 2)
                    if seconds > 0
                    else None,
                    "min": min(fps) if fps else None,
                    "max": max(fps) if fps else None,
                },
                "fps_series": self.fps_series(),
                "freezes": {
                    "count": len(self.freezes),
                    "total_seconds": round(sum(f.duration for f in self.freezes), 3),
                    "longest_seconds": round(
                        max((f.duration for f in self.freezes), default=0.0), 3
                    ),
                    "list": [
                        {"start": round(f.start, 3), "duration": round(f.duration, 3)}
                        for f in self.freezes
                    ],
                },
                "skipped_frames": self.skipped if self.coded_frames else None,
                "repeated_frames": self.repeated if self.coded_frames else None,
                "resolution_changes": max(0, len(self.sizes) - 1),
                "sizes": self.sizes,
                "latency_ms": {
                    "median": _round(_median(latency), 1),
                    "p95": round(float(np.percentile(latency, 95)), 1)
                    if latency
                    else None,
                    "max": round(max(latency), 1) if latency else None,
                },
                "latency_series": self.latency_series(),
            }
        )
        return report


@dataclass
class SpeakingInterval:
    start: float
    end: float | None = None


class AudioMetrics(TrackMetrics):
    """Beep latency and the QA bot's own speaking detection on an audio track."""

    def __init__(self, track_id: str, user_id: str | None, origin: float) -> None:
        super().__init__(track_id, "audio", user_id, origin)
        self.beeps = BeepDetector()
        self.latencies: list[tuple[float, float]] = []
        self.detector: SpeakingDetector = make_detector()
        self.speaking: list[SpeakingInterval] = []
        self.audio_seconds = 0.0

    def audio(self, now: float, mono: NDArray[np.int16], sample_rate: int) -> None:
        """Decoded samples whose first one arrived at ``now``."""
        self._frame_seen(now)
        for onset in self.beeps.push(mono, sample_rate, now):
            self.latencies.append((self.at(onset), onset - nominal_beep_time(onset)))
        # The detector times transitions in audio seconds; map them to arrival.
        offset = now - self.audio_seconds
        self.audio_seconds += len(mono) / sample_rate
        for change in self.detector.push(mono, sample_rate):
            at = self.at(change.time + offset)
            if change.speaking:
                self.speaking.append(SpeakingInterval(at))
            elif self.speaking and self.speaking[-1].end is None:
                self.speaking[-1].end = at

    def median_latency(self) -> float | None:
        return _median([latency for _, latency in self.latencies])

    def intervals(self, end: float) -> list[tuple[float, float]]:
        return [(i.start, i.end if i.end is not None else end) for i in self.speaking]

    def summary(self) -> dict[str, Any]:
        report = self.base_summary()
        latency = [latency * 1000 for _, latency in self.latencies]
        report.update(
            {
                "pattern": bool(self.latencies),
                "beeps": len(self.latencies),
                "latency_ms": {
                    "median": _round(_median(latency), 1),
                    "max": round(max(latency), 1) if latency else None,
                },
                "latency_series": [
                    {"at": round(at, 3), "latency_ms": round(lat * 1000, 1)}
                    for at, lat in self.latencies
                ],
            }
        )
        return report


def overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Seconds during which both interval lists are on."""
    total = 0.0
    for a0, a1 in a:
        for b0, b1 in b:
            total += max(0.0, min(a1, b1) - max(a0, b0))
    return total


def agreement(
    a: list[tuple[float, float]], b: list[tuple[float, float]]
) -> float | None:
    """Overlap over union of two interval lists (1.0 when both are empty)."""
    length_a = sum(e - s for s, e in a)
    length_b = sum(e - s for s, e in b)
    both = overlap(a, b)
    union = length_a + length_b - both
    if union <= 0:
        return 1.0
    return both / union


class ParticipantMetrics:
    """One participant as QA sees it: join timing, tiers, snapshots, speaking."""

    def __init__(self, user_id: str, origin: float) -> None:
        self.user_id = user_id
        self.origin = origin
        self.joined_at: float | None = None
        self.left_at: float | None = None
        self.crashed = False
        self.endpoint_id: str | None = None
        self.display_name: str | None = None
        self.tiers: list[tuple[float, str]] = []
        self.snapshots: list[float] = []
        self.speaking_events: list[SpeakingInterval] = []

    def at(self, now: float) -> float:
        return now - self.origin

    def joined(self, now: float, endpoint_id: str, display_name: str | None) -> None:
        if self.joined_at is None:
            self.joined_at = self.at(now)
        self.endpoint_id = endpoint_id
        self.display_name = display_name
        self.left_at = None

    def left(self, now: float, crashed: bool) -> None:
        self.left_at = self.at(now)
        self.crashed = crashed
        self.speaking_changed(now, False)

    def tier_changed(self, now: float, tier: str) -> None:
        if not self.tiers or self.tiers[-1][1] != tier:
            self.tiers.append((self.at(now), tier))

    def snapshot(self, now: float) -> None:
        self.snapshots.append(self.at(now))

    def speaking_changed(self, now: float, speaking: bool) -> None:
        open_interval = self.speaking_events and self.speaking_events[-1].end is None
        if speaking and not open_interval:
            self.speaking_events.append(SpeakingInterval(self.at(now)))
        elif not speaking and open_interval:
            self.speaking_events[-1].end = self.at(now)

    def tier_at(self, at: float) -> str | None:
        tier = None
        for start, name in self.tiers:
            if start <= at:
                tier = name
        return tier

    def seconds_in_tier(self, tier: str, end: float) -> float:
        total = 0.0
        for i, (start, name) in enumerate(self.tiers):
            stop = self.tiers[i + 1][0] if i + 1 < len(self.tiers) else end
            if name == tier:
                total += max(0.0, stop - start)
        return total

    def timeline(self, end: float) -> list[dict[str, Any]]:
        out = []
        for i, (start, name) in enumerate(self.tiers):
            stop = self.tiers[i + 1][0] if i + 1 < len(self.tiers) else end
            out.append({"tier": name, "start": round(start, 3), "end": round(stop, 3)})
        return out

    def speaking_intervals(self, end: float) -> list[tuple[float, float]]:
        return [
            (i.start, i.end if i.end is not None else end) for i in self.speaking_events
        ]

    def snapshot_rate_while_viewer(self, end: float) -> float | None:
        seconds = self.seconds_in_tier("viewer", end)
        if seconds <= 0:
            return None
        count = sum(1 for at in self.snapshots if self.tier_at(at) == "viewer")
        return count / seconds
