"""The bot as a well-behaved participant of an adaptive call (call-channel.md §5-6).

:class:`CallAdaptation` ties the sans-I/O parts to one bot's call: the
speaking detector on the audio it publishes (``speaking_state`` on each
change), its attention level (``attention_state``), its tier and quality
ceiling applied to the outgoing video through :class:`VideoPolicy` and the
rate-controlled VP8 encoder, and the snapshots it sends as a viewer. The tier
and attention survive a rejoin: a new endpoint starts with what the bot had.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCRtpSender

from callbot.bot.config import BotConfig
from callbot.bot.publishing import PublishedAudioTrack, PublishedVideoTrack
from callbot.bot.snapshots import SnapshotSchedule, encode_snapshot
from callbot.bot.speaking import SpeakingDetector, SpeakingSettings, make_detector
from callbot.bot.tiers import VideoPolicy, VideoSettings, describe
from callbot.call import events as ev
from callbot.call.session import ATTENTION_LEVELS, CallSession
from callbot.errors import CallbotError
from media.encoder import AdaptiveVp8Encoder, EncoderError, install_on_sender

logger = logging.getLogger(__name__)

Log = logging.Logger | logging.LoggerAdapter[logging.Logger]
# How often the snapshot loop looks at its schedule (seconds).
SNAPSHOT_POLL = 0.05


class CallAdaptation:
    """Speaking state, attention, tier and snapshots of one bot."""

    def __init__(
        self,
        config: BotConfig,
        user_id: str,
        *,
        log: Log | None = None,
        report: Callable[[dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.user_id = user_id
        self.log: Log = log or logger
        self._report = report or (lambda report: None)
        self._clock = clock
        self._wall_clock = wall_clock
        self.policy = VideoPolicy(
            config.width, config.height, config.fps, config.tier_profile
        )
        self.speaking_settings = SpeakingSettings(
            detector=config.speaking_detector,
            aggressiveness=config.vad_aggressiveness,
            onset_ms=config.speaking_onset_ms,
            release_ms=config.speaking_release_ms,
        )
        self.attention: str = config.attention
        self.speaking = False
        self.schedule = SnapshotSchedule()
        self.snapshots_sent = 0
        self.snapshots_received: dict[str, int] = {}
        self.remote_speaking: dict[str, bool] = {}
        self.session: CallSession | None = None
        self.video: PublishedVideoTrack | None = None
        self.encoder: AdaptiveVp8Encoder | None = None
        self._remote_detectors: dict[str, SpeakingDetector] = {}

    # ------------------------------------------------------------ settings

    @property
    def video_settings(self) -> VideoSettings:
        """How the bot's video is encoded now."""
        return self.policy.current()

    def set_attention(self, level: str) -> None:
        """Change the attention level; sent at once when in a call."""
        if level not in ATTENTION_LEVELS:
            raise ValueError(f"attention level must be one of {ATTENTION_LEVELS}")
        changed = level != self.attention
        self.attention = level
        session = self.session
        if session is not None and session.in_call:
            session.attention_state(level)
        if changed:
            self.log.info("attention %s", level)

    async def request_quality_tier(self, target_user_id: str, tier: str) -> None:
        """Ask for another participant's tier (only if the settings allow it)."""
        session = self.session
        if session is None or not session.in_call:
            raise CallbotError("not in a call")
        await session.request_quality_tier(target_user_id, tier)

    # ------------------------------------------------------------ call life

    def audio_track(self, source: MediaStreamTrack) -> PublishedAudioTrack:
        """The published audio: ``source`` with the speaking detector listening."""
        detector = make_detector(self.speaking_settings)

        def listen(frame: av.AudioFrame) -> None:
            for change in detector.push_frame(frame):
                self._set_speaking(change.speaking)

        return PublishedAudioTrack(source, listen)

    def video_track(self, source: MediaStreamTrack) -> PublishedVideoTrack:
        """The published video: ``source`` paced and sized by the current tier."""
        # Known limit: a video track a plugin supplies is sent as it is: no tier
        # pacing or sizing, no snapshots (a raw-frame track keeps the bitrate cap).
        self.video = PublishedVideoTrack(source, self.policy.current())
        return self.video

    def video_sender(self, sender: RTCRtpSender) -> None:
        """Encode the sender's video with a VP8 encoder whose rate follows the tier."""
        encoder = AdaptiveVp8Encoder(self.policy.current().max_bitrate)
        try:
            install_on_sender(sender, encoder)
        except EncoderError as exc:
            # Known limit: without the encoder slot the tier caps no bitrate.
            self.log.warning("tier bitrate not applied: %s", exc)
            return
        self.encoder = encoder

    def joined(self, session: CallSession) -> None:
        """A new endpoint: what the server forgot is sent again."""
        self.session = session
        self.speaking = False  # a new participant record starts silent
        if self.attention != "high":
            session.attention_state(self.attention)
        self._apply(self.policy.current(), restart_snapshots=True)

    def ended(self) -> None:
        """The endpoint is gone (its tracks and encoder with it)."""
        self.video = None
        self.encoder = None
        self.schedule.disable()
        self._remote_detectors.clear()

    def leaving(self) -> None:
        """Before ``leave_call``: a speaking bot says it stopped, as the browser."""
        self.schedule.disable()
        session = self.session
        if self.speaking and session is not None and session.in_call:
            session.speaking_state(False)
        self.speaking = False

    # ------------------------------------------------------------ pushes

    def on_event(self, event: ev.CallEvent) -> None:
        """React to one (de-duplicated) call push."""
        if isinstance(event, ev.TierChanged):
            if event.user_id == self.user_id:
                self.log.info("tier changed to %s", event.tier)
                changed = self.policy.tier_changed(event.tier)
                if changed is not None:
                    self._apply(changed)
        elif isinstance(event, ev.QualityTierRequest):
            if event.target_user_id != self.user_id:
                self.log.debug(
                    "quality tier request for %s ignored", event.target_user_id
                )
                return
            self.log.info(
                "%s requests tier %s for this bot", event.from_user_id, event.tier
            )
            requested = self.policy.tier_requested(event.tier)
            if requested is not None:
                self._apply(requested, restart_snapshots=True)
        elif isinstance(event, ev.QualityChanged):
            changed = self.policy.quality_changed(event.quality)
            if changed is not None:
                self._apply(changed)
        elif isinstance(event, ev.AdaptiveQualityChanged):
            changed = self.policy.adaptive_changed(event.enabled)
            if changed is not None:
                self._apply(changed)
        elif isinstance(event, ev.VideoSnapshot):
            count = self.snapshots_received.get(event.user_id, 0) + 1
            self.snapshots_received[event.user_id] = count

    # ------------------------------------------------------------ snapshots

    async def run_snapshots(self) -> None:
        """Send a snapshot whenever one is due; runs for the bot's lifetime."""
        while True:
            await asyncio.sleep(SNAPSHOT_POLL)
            video, session = self.video, self.session
            if (
                video is None
                or video.latest is None  # no frame yet, as the browser skips
                or session is None
                or not session.in_call
                or not self.schedule.due(self._clock())
            ):
                continue
            frame = video.latest
            timestamp = int(self._wall_clock() * 1000)
            try:
                snapshot = await asyncio.to_thread(encode_snapshot, frame, timestamp)
            except (ValueError, av.error.FFmpegError) as exc:
                self.log.warning("snapshot not encoded: %s", exc)
                continue
            if session is self.session and session.in_call:
                session.video_snapshot(
                    snapshot.data, snapshot.width, snapshot.height, snapshot.timestamp
                )
                self.snapshots_sent += 1

    # ------------------------------------------------------------ remote audio

    def remote_audio(self, track_id: str, user_id: str | None, frame: object) -> None:
        """Run the speaking detector on a received audio frame, if configured."""
        if not self.config.detect_remote_speaking or not isinstance(
            frame, av.AudioFrame
        ):
            return
        detector = self._remote_detectors.get(track_id)
        if detector is None:
            detector = make_detector(self.speaking_settings)
            self._remote_detectors[track_id] = detector
        for change in detector.push_frame(frame):
            who = user_id or track_id
            self.remote_speaking[who] = change.speaking
            self._report(
                {
                    "type": "event",
                    "event": "voice_activity",
                    "user_id": user_id,
                    "track_id": track_id,
                    "speaking": change.speaking,
                }
            )

    # ------------------------------------------------------------ report

    def summary(self) -> dict[str, Any]:
        """What the stats report says about the adaptive behaviour."""
        settings = self.policy.current()
        return {
            "tier": settings.tier,
            "speaking": self.speaking,
            "attention": self.attention,
            "video_fps": settings.fps,
            "video_max_bitrate": settings.max_bitrate,
            "snapshots_sent": self.snapshots_sent,
            "snapshots_received": dict(self.snapshots_received),
        }

    # ------------------------------------------------------------ internals

    def _set_speaking(self, speaking: bool) -> None:
        if speaking == self.speaking:
            return
        self.speaking = speaking
        self.log.info("speaking" if speaking else "stopped speaking")
        session = self.session
        if session is not None and session.in_call:
            session.speaking_state(speaking)
        self._report({"type": "event", "event": "speaking", "speaking": speaking})

    def _apply(
        self, settings: VideoSettings, *, restart_snapshots: bool = False
    ) -> None:
        if self.video is not None:
            self.video.apply(settings)
        if self.encoder is not None:
            self.encoder.max_bitrate = settings.max_bitrate
        if settings.snapshots and self.config.snapshots and self.config.video:
            if restart_snapshots or not self.schedule.enabled:
                self.schedule.enable(self._clock())
        else:
            self.schedule.disable()
        self.log.info("video %s", describe(settings))
        self._report(
            {
                "type": "event",
                "event": "video_settings",
                "tier": settings.tier,
                "fps": settings.fps,
                "max_bitrate": settings.max_bitrate,
                "width": settings.width,
                "height": settings.height,
                "snapshots": settings.snapshots,
                "paused": settings.paused,
            }
        )


async def cancel(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
