"""``qa``: a verdict on the call from the media itself.

Per remote video track: frame rate over time, freezes (gaps over 300 ms
between new frames), skipped and repeated frames, resolution changes and
glass-to-glass latency from the frame code of the test pattern; per audio
track: latency of the beeps and the bot's own speaking detection; per track
from RTP: bitrate, loss on the wire (before NACK/RTX repair) and after it,
jitter; per participant: join timing, tier timeline, snapshot rate while in
the viewer tier, speaking intervals (``participant_speaking`` against the
QA bot's own VAD), the A/V offset and an E-model MOS estimate
(:mod:`callbot.qa.emodel`). Tracks without the pattern (browsers) get the
same report with what can be measured without it.

Latency assumes the publisher and the QA bot read one wall clock (one
machine here); an offset between two machines' clocks adds to every figure.

At the end it writes ``report.json``, ``report.html`` and ``junit.xml`` to
its ``out`` directory and reports a ``qa_verdict`` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import statistics
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.frame import Frame
from pydantic import Field

from callbot.bot.audio import frame_to_mono
from callbot.bot.plugin import (
    Plugin,
    PluginConfig,
    PluginContext,
    ReadPath,
    RemoteTrack,
    RemoteTrackInfo,
    WritePath,
)
from callbot.qa import emodel
from callbot.qa.junit import junit_xml
from callbot.qa.metrics import (
    AudioMetrics,
    ParticipantMetrics,
    TrackMetrics,
    VideoMetrics,
    agreement,
)
from callbot.qa.report_html import render
from callbot.qa.verdict import Check, Thresholds, checks_json, evaluate, verdict
from callbot.rtc.rtpwatch import round_trip_time, watch_receiver
from callbot.rtc.tap import EncodedFrame
from media.markers.framecode import read_frame_code

logger = logging.getLogger(__name__)

CLOCK_NOTE = (
    "Latency is receive time minus the send time drawn into each frame (or the"
    " second each beep was sent at), both read from the wall clock: exact when"
    " publisher and QA bot share one clock, as on one machine."
)


class QaConfig(PluginConfig):
    out: WritePath = Field(
        default="qa-report/{bot_id}",
        description=(
            "Where the reports go; {bot_id} and {room_id} are replaced, so bots"
            " sharing a files root keep their reports apart."
        ),
    )
    thresholds: Thresholds = Field(default_factory=Thresholds)
    thresholds_file: ReadPath | None = Field(
        default=None, description="JSON thresholds; replaces ``thresholds``."
    )
    sample_interval: float = Field(default=1.0, gt=0.05, le=10.0)


def luma_plane(frame: av.VideoFrame) -> np.ndarray:
    """The Y plane of a decoded frame as an H x W array (no copy for yuv420p)."""
    if frame.format.name in ("yuv420p", "yuvj420p", "nv12"):
        plane = frame.planes[0]
        rows = np.frombuffer(memoryview(plane), dtype=np.uint8)
        return rows.reshape(-1, plane.line_size)[: frame.height, : frame.width]
    return np.asarray(frame.to_ndarray(format="gray"))


class Qa(Plugin):
    """Measures every remote track and participant; a verdict when leaving."""

    name = "qa"
    config_model = QaConfig

    def __init__(self, config: PluginConfig, context: PluginContext) -> None:
        super().__init__(config, context)
        assert isinstance(config, QaConfig)
        self.settings = config
        self.thresholds = (
            Thresholds.from_file(config.thresholds_file)
            if config.thresholds_file
            else config.thresholds
        )
        self.origin = context.clock()
        self.out = Path(
            config.out.replace("{bot_id}", context.bot_id).replace(
                "{room_id}", context.room_id
            )
        )
        self.joined_at: float | None = None
        self.endpoint_id: str | None = None
        self.tracks: dict[str, TrackMetrics] = {}
        self.participants: dict[str, ParticipantMetrics] = {}
        self.receivers: list[Any] = []
        self.rtt: list[dict[str, float]] = []
        self.report: dict[str, Any] | None = None
        self.passed: bool | None = None
        self._sampler: asyncio.Task[None] | None = None

    def _at(self) -> float:
        return self.context.clock() - self.origin

    def participant(self, user_id: str) -> ParticipantMetrics:
        found = self.participants.get(user_id)
        if found is None:
            found = self.participants[user_id] = ParticipantMetrics(
                user_id, self.origin
            )
        return found

    # ------------------------------------------------------------ hooks

    def on_joined(self, endpoint_id: str) -> None:
        if self.joined_at is None:
            self.joined_at = self._at()
        self.endpoint_id = endpoint_id
        if self._sampler is None:
            self._sampler = asyncio.create_task(self._sample(), name="qa sampler")

    def on_participant_joined(
        self, user_id: str, endpoint_id: str, display_name: str | None
    ) -> None:
        self.participant(user_id).joined(
            self.context.clock(), endpoint_id, display_name
        )

    def on_participant_left(self, user_id: str, crashed: bool) -> None:
        self.participant(user_id).left(self.context.clock(), crashed)

    def on_track_added(self, track: RemoteTrack) -> None:
        info = track.info
        if info.track_id in self.tracks:
            return
        now = self.context.clock()
        metrics: TrackMetrics
        if info.kind == "video":
            video = VideoMetrics(info.track_id, info.user_id, self.origin)
            track.on_decoded(lambda f: self._video(video, f), owner=self.name)
            track.request_keyframe()
            metrics = video
        else:
            audio = AudioMetrics(info.track_id, info.user_id, self.origin)
            track.on_decoded(lambda f: self._audio(audio, f), owner=self.name)
            metrics = audio
        metrics.added(now)
        track.on_encoded(lambda f: self._encoded(metrics, f), owner=self.name)
        if track.receiver is not None:
            metrics.watch = watch_receiver(track.receiver)
            self.receivers.append(track.receiver)
        self.tracks[info.track_id] = metrics
        if info.user_id is not None:
            self.participant(info.user_id)
        self.context.log.info(
            "QA measures %s track %s of %s", info.kind, info.track_id, info.user_id
        )

    def on_track_ended(self, track: RemoteTrackInfo) -> None:
        metrics = self.tracks.get(track.track_id)
        if metrics is not None:
            metrics.ended(self.context.clock())

    def on_snapshot(
        self, user_id: str, jpeg: bytes, width: int, height: int, timestamp: float
    ) -> None:
        self.participant(user_id).snapshot(self.context.clock())

    def on_tier_changed(self, user_id: str, tier: str) -> None:
        self.participant(user_id).tier_changed(self.context.clock(), tier)

    def on_speaking(self, user_id: str, speaking: bool) -> None:
        self.participant(user_id).speaking_changed(self.context.clock(), speaking)

    async def on_leaving(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        now = self.context.clock()
        for metrics in self.tracks.values():
            metrics.sample_wire(now)
        self.report = self.build_report(now)
        self.write(self.report)
        self.context.report(
            {
                "type": "event",
                "event": "qa_verdict",
                "passed": self.passed,
                "out": str(self.out),
                "ts": now,
            }
        )

    # ------------------------------------------------------------ frames

    def _video(self, metrics: VideoMetrics, frame: Frame) -> None:
        if not isinstance(frame, av.VideoFrame):
            return
        now = self.context.clock()
        code = read_frame_code(luma_plane(frame))
        metrics.frame(now, frame.width, frame.height, code)

    def _audio(self, metrics: AudioMetrics, frame: Frame) -> None:
        if not isinstance(frame, av.AudioFrame):
            return
        metrics.audio(self.context.clock(), frame_to_mono(frame), frame.sample_rate)

    def _encoded(self, metrics: TrackMetrics, frame: EncodedFrame) -> None:
        metrics.encoded_bytes += len(frame.data)

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sample_interval)
            now = self.context.clock()
            for metrics in list(self.tracks.values()):
                if metrics.ended_at is None:
                    metrics.sample_wire(now)
            for receiver in list(self.receivers):
                try:
                    rtt = await round_trip_time(receiver)
                except Exception:  # a closed peer connection
                    continue
                if rtt is not None:
                    self.rtt.append(
                        {"at": round(now - self.origin, 3), "rtt_ms": rtt * 1000}
                    )
                    break

    # ------------------------------------------------------------ report

    def build_report(self, now: float) -> dict[str, Any]:
        """The report of everything measured until ``now``, with its verdict."""
        end = now - self.origin
        tracks = [m.summary() for m in self.tracks.values()]
        first_frames = [
            m.first_frame_at for m in self.tracks.values() if m.first_frame_at
        ]
        rtts = [s["rtt_ms"] for s in self.rtt]
        participants = [self._participant_report(p, end) for p in self._people()]
        report: dict[str, Any] = {
            "room_id": self.context.room_id,
            "bot_id": self.context.bot_id,
            "user_id": self.context.user_id,
            "started_at": self.origin,
            "duration": round(end, 3),
            "clock_note": CLOCK_NOTE,
            # Known limit: the POST /bots and channel-join times belong to the
            # control plane and the bot; the plugin starts its clock at creation.
            "self": {
                "started_at": 0.0,
                "joined_at": self.joined_at,
                "first_track_at": min(
                    (m.added_at for m in self.tracks.values() if m.added_at),
                    default=None,
                ),
                "connected_at": _r(
                    min(
                        (
                            p
                            for m in self.tracks.values()
                            if (p := m.first_packet_at()) is not None
                        ),
                        default=None,
                    )
                ),
                "first_frame_at": min(first_frames, default=None),
            },
            "rtt_ms": {
                "median": round(statistics.median(rtts), 2) if rtts else None,
                "series": self.rtt,
            },
            "tracks": tracks,
            "participants": participants,
            "thresholds": self.thresholds.model_dump(),
        }
        checks = evaluate(report, self.thresholds)
        self.passed = verdict(checks)
        report["checks"] = checks_json(checks)
        report["passed"] = self.passed
        return report

    def _people(self) -> list[ParticipantMetrics]:
        return [
            p for uid, p in self.participants.items() if uid != self.context.user_id
        ]

    def _participant_report(
        self, person: ParticipantMetrics, end: float
    ) -> dict[str, Any]:
        mine = [m for m in self.tracks.values() if m.user_id == person.user_id]
        video = [m for m in mine if isinstance(m, VideoMetrics)]
        audio = [m for m in mine if isinstance(m, AudioMetrics)]
        first_frame = min(
            (m.first_frame_at for m in mine if m.first_frame_at is not None),
            default=None,
        )
        first_track = min(
            (m.added_at for m in mine if m.added_at is not None), default=None
        )
        video_latency = video[0].median_latency() if video else None
        audio_latency = audio[0].median_latency() if audio else None
        offset = (
            round((audio_latency - video_latency) * 1000, 1)
            if audio_latency is not None and video_latency is not None
            else None
        )
        vad = audio[0].intervals(end) if audio else []
        events = person.speaking_intervals(end)
        return {
            "user_id": person.user_id,
            "endpoint_id": person.endpoint_id,
            "display_name": person.display_name,
            "join": {
                "joined_at": _r(person.joined_at),
                "first_track_at": _r(first_track),
                "first_packet_at": _r(
                    min(
                        (p for m in mine if (p := m.first_packet_at()) is not None),
                        default=None,
                    )
                ),
                "first_frame_at": _r(first_frame),
                "first_frame_after_join": _r(first_frame - person.joined_at)
                if first_frame is not None and person.joined_at is not None
                else None,
                "left_at": _r(person.left_at),
                "crashed": person.crashed,
            },
            "tiers": person.timeline(end),
            "snapshots": len(person.snapshots),
            "snapshot_rate_while_viewer": _r(person.snapshot_rate_while_viewer(end)),
            "speaking": {
                "participant_speaking": [[_r(a), _r(b)] for a, b in events],
                "vad": [[_r(a), _r(b)] for a, b in vad],
                "agreement": _r(agreement(events, vad)) if audio else None,
            },
            "av_offset_ms": offset,
            "mos": self._mos(audio[0] if audio else None, audio_latency, video_latency),
        }

    def _mos(
        self,
        audio: AudioMetrics | None,
        audio_latency: float | None,
        video_latency: float | None,
    ) -> dict[str, Any] | None:
        if audio is None or audio.frames == 0:
            return None
        rtts = [s["rtt_ms"] for s in self.rtt]
        if audio_latency is not None:
            delay, source = audio_latency * 1000, "beeps"
        elif video_latency is not None:
            delay, source = video_latency * 1000, "video frame code"
        elif rtts:
            delay, source = statistics.median(rtts) / 2, "RTT / 2"
        else:
            delay, source = 0.0, "unknown (0)"
        loss = audio.watch.tracker.counts().loss if audio.watch is not None else 0.0
        result = emodel.estimate(delay, loss)
        return {
            "mos": round(result.mos, 2),
            "r": round(result.r, 1),
            "delay_ms": round(delay, 1),
            "delay_from": source,
            "loss": round(loss, 5),
        }

    def write(self, report: dict[str, Any]) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (self.out / "report.html").write_text(render(report))
        checks = [Check(**c) for c in report["checks"]]
        (self.out / "junit.xml").write_text(
            junit_xml(
                checks, suite=f"qa.{report['room_id']}", seconds=report["duration"]
            )
        )
        self.context.log.info(
            "QA %s: %d checks, reports in %s",
            "passed" if report["passed"] else "FAILED",
            len(checks),
            self.out,
        )


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
