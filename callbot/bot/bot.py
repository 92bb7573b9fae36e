"""A headless call participant: joins a call, publishes, receives, recovers.

One driver task handles everything that changes the call in order: channel
joins and errors, media events, and the recoveries of call-channel.md §7. After
``phx_error`` or a lost socket the Phoenix channel rejoins by itself and the bot
sends ``join_call`` again with a new peer connection; after its own
``participant_left`` (endpoint crash, stale channel) or ``call_ended`` it sends
``join_call`` again on the same channel. Unlike the browser it never gives up.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from aiortc import MediaStreamTrack, RTCRtpTransceiver
from aiortc.exceptions import InvalidStateError
from aiortc.mediastreams import MediaStreamError

from callbot.bot.adaptive import CallAdaptation
from callbot.bot.backoff import Backoff
from callbot.bot.config import BotConfig
from callbot.bot.plugin import (
    Plugin,
    PluginContext,
    PluginHost,
    RemoteTrack,
    RemoteTrackInfo,
)
from callbot.bot.sensor_feed import SensorFeed
from callbot.bot.stats import BotStats, InboundTrackStats, OutboundTrackStats
from callbot.call import events as ev
from callbot.call.session import CallSession
from callbot.errors import CallbotError, MediaEventError, ReplyError, SocketClosed
from callbot.logtext import RepeatLimiter, clip
from callbot.phoenix.client import ChannelState, Socket
from callbot.rtc import media_events as me
from callbot.rtc import negotiation as neg
from callbot.rtc.icepolicy import IceAddressPolicy, install_ice_policy
from callbot.rtc.peer import BotPeer
from callbot.rtc.tap import EncodedFrame, ReceiverTap
from media.sources.file import FileAudioTrack, read_audio
from media.sources.pattern import FrameHook, PatternTrack
from media.sources.solid import solid_fill
from media.sources.tone import ToneTrack

logger = logging.getLogger(__name__)

STATUSES = ("starting", "connecting", "in_call", "leaving", "left", "failed")
# Join refusals that retrying cannot fix.
FATAL_JOIN_REASONS = frozenset({"unauthorized", "not_room_member", "user_id required"})
JOIN_CALL_TIMEOUT = 5.0
# Seconds before the n-th consecutive join_call retry (then the last value).
JOIN_CALL_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)
# A channel the server closed is joined again on the JS client's rejoin steps.
CHANNEL_REJOIN_BACKOFF = (1.0, 2.0, 5.0, 10.0)
REPORTED_EVENTS = frozenset(
    {
        "participant_joined",
        "participant_left",
        "track_added",
        "track_removed",
        "tier_changed",
        "quality_changed",
        "call_ended",
    }
)


class BotLog(logging.LoggerAdapter[logging.Logger]):
    """Puts ``bot_id`` and ``room_id`` on every record and in front of the text."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return f"[{extra.get('bot_id')} {extra.get('room_id')}] {msg}", kwargs


# ---------------------------------------------------------------- driver input


@dataclass(frozen=True)
class _ChannelJoined:
    response: dict[str, Any]


@dataclass(frozen=True)
class _ChannelDown:
    reason: str


@dataclass(frozen=True)
class _MediaEvent:
    data: object
    generation: int


@dataclass(frozen=True)
class _Rejoin:
    reason: str
    generation: int


@dataclass(frozen=True)
class _EndpointLost:
    """The endpoint of ``generation`` is gone; join_call again after a delay."""

    reason: str
    generation: int


@dataclass(frozen=True)
class _JoinChannel:
    """Join the call channel again after the server closed it."""


_Input = (
    _ChannelJoined | _ChannelDown | _MediaEvent | _Rejoin | _EndpointLost | _JoinChannel
)


@dataclass
class _Call:
    """One endpoint: from a ``join_call`` reply to its end."""

    generation: int
    endpoint_id: str
    negotiation: neg.ClientNegotiation
    peer: BotPeer | None = None
    sources: dict[str, MediaStreamTrack] = field(default_factory=dict)
    senders: dict[str, RTCRtpTransceiver] = field(default_factory=dict)  # track id
    consumers: list[asyncio.Task[None]] = field(default_factory=list)
    receivers: list[tuple[RTCRtpTransceiver, InboundTrackStats]] = field(
        default_factory=list
    )
    tracks: dict[str, InboundTrackStats] = field(default_factory=dict)  # track id


class Bot:
    """One bot in one room."""

    def __init__(
        self,
        config: BotConfig,
        *,
        on_report: Callable[[dict[str, Any]], None] | None = None,
        bot_id: str | None = None,
        plugin_registry: Mapping[str, type[Plugin]] | None = None,
    ) -> None:
        """``plugin_registry``: plugin classes given in code, found before the
        ``callbot.plugins`` entry points (for plugins that are not installed)."""
        self.config = config
        self.user_id = config.resolved_user_id()
        self.name = config.display_name or self.user_id
        self.bot_id = bot_id or self.user_id
        self.log = BotLog(logger, {"bot_id": self.bot_id, "room_id": config.room_id})
        self.status = "starting"
        self.reason: str | None = None
        self._on_report = on_report
        self._stats = BotStats()
        self.plugins = PluginHost(
            config.plugins,
            PluginContext(
                self.bot_id, config.room_id, self.user_id, self.log, self._report
            ),
            on_essential_failure=self._plugin_failed,
            registry=plugin_registry,
        )
        self._plugin_failure: str | None = None
        # The tier each participant last had in what the plugins were told.
        self._plugin_tiers: dict[str, str] = {}
        self.adaptation = CallAdaptation(
            config, self.user_id, log=self.log, report=self._report
        )
        # Read once, here, so that a bad file fails before joining.
        self._audio_samples = (
            read_audio(config.audio_file) if config.audio_file is not None else None
        )
        self.sensor_feed = (
            SensorFeed(
                config.sensors,
                config.server_url,
                self.log,
                on_measurements=self.plugins.measurements if self.plugins else None,
            )
            if config.sensors is not None
            else None
        )
        self._policy = IceAddressPolicy(config.ice_addresses)
        self._socket: Socket | None = None
        self._session: CallSession | None = None
        self._call: _Call | None = None
        self._generation = 0
        self._join_backoff = Backoff(JOIN_CALL_BACKOFF)
        self._rejoin_backoff = Backoff()
        self._channel_backoff = Backoff(CHANNEL_REJOIN_BACKOFF)
        self._channel_join: asyncio.Task[None] | None = None
        self._warnings = RepeatLimiter()
        self._ice_servers: list[dict[str, Any]] = []
        self._inputs: asyncio.Queue[_Input] = asyncio.Queue()
        self._leave_requested: asyncio.Event | None = None
        self._leaving = False

    # ------------------------------------------------------------ public

    def leave(self) -> None:
        """Ask the bot to leave; :meth:`run` returns within about 2 s."""
        self._leaving = True
        if self._leave_requested is not None:
            self._leave_requested.set()

    def stats(self) -> dict[str, Any]:
        """The current ``stats`` report."""
        participants = []
        if self._session is not None:
            participants = [
                u for u in self._session.roster.user_ids() if u != self.user_id
            ]
        report = self._stats.report(time.time(), participants)
        report.update(self.adaptation.summary())
        return report

    def set_attention(self, level: str) -> None:
        """Attention ``high``, ``medium`` or ``low`` (a hidden tab); sent at once."""
        self.adaptation.set_attention(level)

    async def request_quality_tier(self, target_user_id: str, tier: str) -> None:
        """Ask for another participant's tier; needs allow_quality_tier_requests."""
        await self.adaptation.request_quality_tier(target_user_id, tier)

    async def run(self) -> None:
        """Run until :meth:`leave` or the configured duration; recover meanwhile."""
        self._leave_requested = asyncio.Event()
        if self._leaving:
            self._leave_requested.set()
        install_ice_policy(self._policy)
        self.plugins.start()
        driver = asyncio.create_task(self._drive(), name=f"bot {self.bot_id}")
        stats = asyncio.create_task(self._report_stats(), name=f"stats {self.bot_id}")
        stop = asyncio.create_task(self._leave_requested.wait())
        snapshots = asyncio.create_task(
            self.adaptation.run_snapshots(), name=f"snapshots {self.bot_id}"
        )
        feed = (
            asyncio.create_task(self.sensor_feed.run(), name=f"sensors {self.bot_id}")
            if self.sensor_feed is not None
            else None
        )
        try:
            await asyncio.wait(
                {driver, stop},
                timeout=self.config.duration,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            # Nothing asked the bot to leave and nothing failed: its time is up.
            expired = not stop.done() and not driver.done()
            stop.cancel()
            snapshots.cancel()
            if feed is not None:
                feed.cancel()
            failed = driver.done() and self.status == "failed"
            # Its duration is over and no socket ever opened: nothing to leave.
            unreachable = not self._leaving and self._socket is None
            driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await driver
            if failed or unreachable:
                await self.plugins.close()
                await self._close_socket()
                if unreachable and not failed:
                    self.log.warning(
                        "never connected to %s", clip(self.config.server_url)
                    )
                    self._set_status("failed", "cannot_connect")
            else:
                await self._shutdown("duration" if expired else None)
            stats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stats
            with contextlib.suppress(asyncio.CancelledError):
                await snapshots
            if feed is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await feed
            self.report_stats()

    # ------------------------------------------------------------ lifecycle

    async def _drive(self) -> None:
        self._set_status("connecting")
        socket = await self._connect()
        session = CallSession.open(
            socket,
            self.config.room_id,
            self.user_id,
            self.name,
            allow_quality_tier_requests=self.config.allow_quality_tier_requests,
            log=self.log,
        )
        self._session = session
        session.on_event(self._on_call_event)
        session.channel.on_state(self._on_channel_state)
        try:
            await session.join()
        except ReplyError as exc:
            if exc.reason in FATAL_JOIN_REASONS:
                self._set_status("failed", exc.reason)
                return
            # The channel keeps rejoining on its schedule; wait for it.
            self.log.warning("call channel join refused (%s), retrying", exc.reason)
        except CallbotError as exc:
            self.log.warning("call channel join failed (%s), retrying", exc)

        while True:
            item = await self._inputs.get()
            try:
                await self._handle(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Whatever went wrong belongs to this endpoint: start a new one.
                self.log.exception("call failed: %s", clip(exc))
                if self._call is not None and self._session.channel.state is (
                    ChannelState.JOINED
                ):
                    self._inputs.put_nowait(
                        _EndpointLost(str(exc), self._call.generation)
                    )

    async def _connect(self) -> Socket:
        params = {"token": self.config.token} if self.config.token else None
        tries = 0
        while True:
            socket = Socket(
                self.config.server_url,
                params,
                max_frame_size=self.config.max_frame_size,
            )
            try:
                await socket.connect()
            except SocketClosed as exc:
                delay = JOIN_CALL_BACKOFF[min(tries, len(JOIN_CALL_BACKOFF) - 1)]
                tries += 1
                self.log.warning("cannot connect (%s), retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            self._socket = socket
            self.log.info("connected to %s", self.config.server_url)
            return socket

    async def _handle(self, item: _Input) -> None:
        if isinstance(item, _ChannelJoined):
            ice = item.response.get("ice_servers") if item.response else None
            self._ice_servers = ice if isinstance(ice, list) else []
            await self._end_call("channel rejoined")
            await self._start_call()
        elif isinstance(item, _ChannelDown):
            if self._call is not None:
                self.log.warning("call channel lost (%s)", item.reason)
            await self._end_call(item.reason)
            if not self._leaving:
                self._set_status("connecting", item.reason)
            if item.reason == "phx_close" and not self._leaving:
                # phx_close ends the channel object for good (no rejoin of its
                # own); a bot does not give up, so it joins the channel again.
                delay = self._channel_backoff.next_delay(self._now())
                self.log.warning(
                    "the server closed the call channel; joining it again in %.1f s",
                    delay,
                )
                asyncio.get_running_loop().call_later(
                    delay, self._inputs.put_nowait, _JoinChannel()
                )
        elif isinstance(item, _JoinChannel):
            self._join_channel()
        elif isinstance(item, _EndpointLost):
            if self._call is None or item.generation != self._call.generation:
                return
            await self._end_call(item.reason)
            delay = self._rejoin_backoff.next_delay(self._now())
            self.log.info("join_call again in %.1f s (%s)", delay, item.reason)
            asyncio.get_running_loop().call_later(
                delay, self._inputs.put_nowait, _Rejoin(item.reason, -1)
            )
        elif isinstance(item, _Rejoin):
            if self._call is not None and item.generation != self._call.generation:
                return
            await self._end_call(item.reason)
            await self._start_call()
        elif isinstance(item, _MediaEvent):
            call = self._call
            if call is not None and item.generation == call.generation:
                await self._on_media_event(call, item.data)

    async def _start_call(self) -> None:
        session = self._session
        assert session is not None
        if session.channel.state is not ChannelState.JOINED:
            return  # the next _ChannelJoined starts it
        try:
            reply = await session.join_call(JOIN_CALL_TIMEOUT)
        except CallbotError as exc:
            if session.channel.state is not ChannelState.JOINED:
                # The channel rejoins on its own schedule; join_call follows
                # each rejoin, so no retry of our own.
                self.log.warning(
                    "join_call failed (%s); join_call follows when the channel"
                    " has rejoined",
                    clip(exc),
                )
                return
            delay = self._join_backoff.next_delay(self._now())
            self.log.warning(
                "join_call failed (%s), retrying in %.1f s", clip(exc), delay
            )
            asyncio.get_running_loop().call_later(
                delay, self._inputs.put_nowait, _Rejoin(str(exc), -1)
            )
            return

        self._generation += 1
        kinds = [
            k
            for k, on in (("audio", self.config.audio), ("video", self.config.video))
            if on
        ]
        call = _Call(self._generation, reply.endpoint_id, neg.ClientNegotiation(kinds))
        self._call = call
        self._stats.endpoint_id = reply.endpoint_id
        self._stats.joins += 1
        self._stats.outbound = {}
        others = [u for u in session.roster.user_ids() if u != self.user_id]
        self.log.info(
            "joined the call as endpoint %s with %d others %s",
            clip(reply.endpoint_id),
            len(others),
            clip(others),
        )
        self._report({"type": "joined", "endpoint_id": reply.endpoint_id})
        self.plugins.emit("on_joined", reply.endpoint_id)
        for user_id in others:
            # Those already in the call are news to the plugins too.
            known = session.roster.get(user_id)
            if known is not None:
                name = known.user_info.get("displayName") or known.user_info.get("name")
                self.plugins.emit(
                    "on_participant_joined",
                    user_id,
                    known.endpoint_id,
                    name if isinstance(name, str) else None,
                )
        # What happened before the bot joined reaches the plugins as it stands
        # in the join_call table: every tier, and who is speaking now.
        self._plugin_tiers.clear()
        for user_id in session.roster.user_ids():
            known = session.roster.get(user_id)
            if known is None:
                continue
            self._tier_to_plugins(user_id, known.tier)
            if known.speaking and user_id != self.user_id:
                self.plugins.emit("on_speaking", user_id, True)
        self._set_status("in_call")
        self.adaptation.joined(session)
        metadata = {"displayName": self.name, "name": self.name}
        await self._execute(call, call.negotiation.connect(metadata))

    async def _end_call(self, reason: str) -> None:
        call, self._call = self._call, None
        if call is None:
            return
        self.log.info("endpoint %s ended (%s)", call.endpoint_id, reason)
        self.adaptation.ended()
        for task in call.consumers:
            task.cancel()
        for stats in call.tracks.values():
            stats.ended = True
        self.plugins.tracks_ended()
        for source in call.sources.values():
            source.stop()
        if call.peer is not None:
            await call.peer.close()
        for task in call.consumers:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _shutdown(self, reason: str | None = None) -> None:
        """leave_call, phx_leave, peer connection closed: bounded to about 2 s."""
        self._leaving = True
        self._set_status("leaving", reason)
        session = self._session
        if session is not None and session.channel.state is ChannelState.JOINED:
            self.adaptation.leaving()
            if self._call is not None and session.in_call:
                session.send_media_event(me.Disconnect())
            with contextlib.suppress(CallbotError, TimeoutError):
                await asyncio.wait_for(session.leave_call(0.7), 0.8)
            with contextlib.suppress(CallbotError, TimeoutError):
                await asyncio.wait_for(session.leave(0.5), 0.6)
        await self._end_call("left")
        # Recordings and other outputs are final before the bot reports left.
        await self.plugins.close()
        await self._close_socket()
        self.log.info("left the call")
        if self._plugin_failure is not None:
            self._set_status("failed", self._plugin_failure)
        else:
            self._set_status("left")

    async def _close_socket(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(CallbotError, TimeoutError, OSError):
                await asyncio.wait_for(self._socket.close(), 0.3)

    # ------------------------------------------------------------ pushes

    def _on_channel_state(
        self, state: ChannelState, info: dict[str, Any] | None
    ) -> None:
        if self._leaving:
            return
        if state is ChannelState.JOINED:
            self._inputs.put_nowait(_ChannelJoined(info or {}))
        elif state is ChannelState.ERRORED:
            reason = (info or {}).get("reason", "errored")
            response = (info or {}).get("response")
            if reason == "join_refused" and isinstance(response, dict):
                refused = response.get("reason")
                if refused in FATAL_JOIN_REASONS and self._call is None:
                    self.log.error("call channel join refused: %s", refused)
            self._inputs.put_nowait(_ChannelDown(str(reason)))
        elif state is ChannelState.CLOSED:
            self._inputs.put_nowait(_ChannelDown(str((info or {}).get("reason"))))

    def _on_call_event(self, event: ev.CallEvent) -> None:
        call = self._call
        generation = call.generation if call is not None else -1
        if isinstance(event, ev.MediaEvent):
            self._inputs.put_nowait(_MediaEvent(event.data, generation))
            return
        if self.plugins:
            self._emit_to_plugins(event)

        if event.event in REPORTED_EVENTS:
            report: dict[str, Any] = {"type": "event", "event": event.event}
            report.update(event.model_dump(exclude={"event"}))
            self._report(report)
        if isinstance(event, ev.ParticipantJoined) and event.user_id != self.user_id:
            self.log.info("%s joined the call", clip(event.user_id))
        elif isinstance(event, ev.ParticipantLeft):
            if event.user_id != self.user_id:
                self.log.info(
                    "%s left the call%s",
                    clip(event.user_id),
                    " (crashed)" if event.crashed else "",
                )
            elif call is not None and not self._leaving:
                why = "endpoint crashed" if event.crashed else "removed from the call"
                self.log.warning("%s, joining again", why)
                self._inputs.put_nowait(_EndpointLost(why, generation))
        elif isinstance(event, ev.CallEnded) and call is not None and not self._leaving:
            self.log.warning("call ended by the server, joining again")
            self._inputs.put_nowait(_EndpointLost("call ended", generation))
        self.adaptation.on_event(event)

    def _emit_to_plugins(self, event: ev.CallEvent) -> None:
        plugins = self.plugins
        if isinstance(event, ev.ParticipantJoined) and event.user_id != self.user_id:
            info = event.user_info if isinstance(event.user_info, dict) else {}
            name = info.get("displayName") or info.get("name")
            plugins.emit(
                "on_participant_joined",
                event.user_id,
                event.endpoint_id,
                name if isinstance(name, str) else None,
            )
            # A new participant starts as a viewer without a tier_changed.
            joiner = self._session.roster.get(event.user_id) if self._session else None
            self._tier_to_plugins(event.user_id, joiner.tier if joiner else "viewer")
        elif isinstance(event, ev.ParticipantLeft) and event.user_id != self.user_id:
            plugins.participant_left(event.user_id)
            plugins.emit("on_participant_left", event.user_id, event.crashed)
            self._plugin_tiers.pop(event.user_id, None)
        elif isinstance(event, ev.TierChanged):
            self._tier_to_plugins(event.user_id, event.tier)
        elif isinstance(event, ev.AdaptiveQualityChanged) and not event.enabled:
            # The server makes everyone active without a tier_changed each.
            for user_id in list(self._plugin_tiers):
                self._tier_to_plugins(user_id, "active")
        elif isinstance(event, ev.ParticipantSpeaking):
            plugins.emit("on_speaking", event.user_id, bool(event.speaking))
        elif isinstance(event, ev.VideoSnapshot) and isinstance(event.data, str):
            try:
                jpeg = base64.b64decode(event.data, validate=True)
            except (binascii.Error, ValueError):
                self._warn(
                    "snapshot not base64",
                    "snapshot of %s is not base64, ignored",
                    clip(event.user_id),
                )
                return
            sent = event.timestamp
            sent_at = sent / 1000 if isinstance(sent, int | float) else time.time()
            width = event.width if isinstance(event.width, int) else 0
            height = event.height if isinstance(event.height, int) else 0
            plugins.emit("on_snapshot", event.user_id, jpeg, width, height, sent_at)

    def _tier_to_plugins(self, user_id: str, tier: str) -> None:
        """``on_tier_changed`` unless the plugins know this tier already."""
        if self._plugin_tiers.get(user_id) == tier:
            return
        self._plugin_tiers[user_id] = tier
        self.plugins.emit("on_tier_changed", user_id, tier)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _warn(self, key: str, msg: str, *args: object) -> None:
        """A warning from untrusted input: clipped, once per key every 10 s."""
        held = self._warnings.allow(key, self._now())
        if held is None:
            return
        text = msg % tuple(clip(a) for a in args)
        if held:
            text += f" ({held} more like it not logged)"
        self.log.warning("%s", text)

    def _join_channel(self) -> None:
        """Join the call channel again after the server closed it."""
        session = self._session
        if session is None or self._leaving:
            return
        if session.channel.state is not ChannelState.CLOSED:
            return
        if self._channel_join is not None and not self._channel_join.done():
            return

        async def join() -> None:
            try:
                await session.join()
            except CallbotError as exc:
                # The channel keeps rejoining on its own schedule.
                self.log.warning("call channel join failed (%s)", clip(exc))

        self._channel_join = asyncio.create_task(join())

    def _plugin_failed(self, reason: str) -> None:
        if self._plugin_failure is None:
            self._plugin_failure = reason
            self.log.error("essential %s; leaving", reason)
            self.leave()

    # ------------------------------------------------------------ media events

    async def _on_media_event(self, call: _Call, data: object) -> None:
        try:
            event = me.decode(data)
        except MediaEventError as exc:
            self._warn(
                "bad media event", "media event the bot cannot use, ignored: %s", exc
            )
            return
        if isinstance(event, me.UnknownMediaEvent):
            key = f"unknown media event {clip(event.type, 80)}"
            if self._warnings.allow(key, self._now()) is not None:
                self.log.info("media event %s not used, ignored", clip(event.type))
            return
        self.log.debug("< media event %s", event.kind)
        if isinstance(event, me.TracksRemoved):
            self._report(
                {
                    "type": "event",
                    "event": "tracks_removed",
                    "endpoint_id": event.endpoint_id,
                    "user_id": neg.user_id_of(event.endpoint_id),
                    "track_ids": list(event.track_ids),
                }
            )
        await self._execute(call, call.negotiation.receive(event))

    async def _execute(self, call: _Call, actions: list[neg.Action]) -> None:
        session = self._session
        assert session is not None
        for action in actions:
            if self._call is not call:
                return
            if isinstance(action, neg.SendEvent):
                session.send_media_event(action.event)
            elif isinstance(action, neg.PrepareOffer):
                try:
                    more = await self._prepare_offer(call, action)
                except InvalidStateError as exc:
                    # The peer connection was closed under the offer (the
                    # endpoint ended meanwhile): that endpoint is over.
                    self.log.info(
                        "endpoint %s ended while its offer was prepared (%s)",
                        call.endpoint_id,
                        exc,
                    )
                    if self._call is call:
                        self._inputs.put_nowait(
                            _EndpointLost("peer connection closed", call.generation)
                        )
                    return
                await self._execute(call, more)
            elif isinstance(action, neg.ApplyAnswer):
                assert call.peer is not None
                await call.peer.apply_answer(action.sdp)
            elif isinstance(action, neg.ApplyRemoteCandidate):
                assert call.peer is not None
                if await call.peer.add_remote_candidate(
                    action.candidate, action.sdp_mid, action.sdp_mline_index
                ):
                    self._stats.remote_candidates.append(action.candidate)
            elif isinstance(action, neg.RemoteTrackAnnounced):
                self.log.info(
                    "%s publishes track %s",
                    clip(action.track.user_id),
                    clip(action.track.track_id),
                )
            elif isinstance(action, neg.RemoteTrackEnded):
                stats = call.tracks.get(action.track.track_id)
                if stats is not None:
                    stats.ended = True
                self.plugins.track_ended(action.track.track_id)
                self.log.info(
                    "track %s of %s ended",
                    clip(action.track.track_id),
                    clip(action.track.user_id),
                )
                self._report(
                    {
                        "type": "event",
                        "event": "track_ended",
                        "track_id": action.track.track_id,
                        "user_id": action.track.user_id,
                    }
                )
            elif isinstance(action, neg.EndpointLeft):
                self.log.debug("endpoint %s left", action.endpoint_id)

    async def _prepare_offer(
        self, call: _Call, action: neg.PrepareOffer
    ) -> list[neg.Action]:
        if action.create_peer:
            call.peer = BotPeer(
                self._ice_servers,
                self._policy,
                on_track=lambda t, track: self._on_remote_track(call, t, track),
                log=self.log,
            )
        peer = call.peer
        assert peer is not None
        for local in action.add_sendonly:
            source = self._source(local.kind)
            call.sources[local.kind] = source
            call.senders[local.track_id] = peer.add_sendonly(source)
            if local.kind == "video":
                self.adaptation.video_sender(call.senders[local.track_id].sender)
            self._stats.outbound[local.track_id] = OutboundTrackStats(
                local.kind, local.track_id
            )
        for kind in neg.KINDS:
            for _ in range(action.add_recvonly.get(kind, 0)):
                peer.add_recvonly(kind)
        sdp = await peer.create_offer()
        mids = {
            track_id: transceiver.mid
            for track_id, transceiver in call.senders.items()
            if transceiver.mid is not None
        }
        return call.negotiation.offer_created(sdp, mids)

    def _source(self, kind: str) -> MediaStreamTrack:
        published = self.plugins.source(kind)
        if published is not None:
            return published  # a plugin's track is sent as it is
        c = self.config
        if kind == "video":
            overlay: FrameHook | None = (
                self.sensor_feed.overlay if self.sensor_feed else None
            )
            if c.video_colour is not None:
                overlay = solid_fill(c.video_colour, overlay)
            pattern = PatternTrack(self.name, c.width, c.height, c.fps, overlay=overlay)
            return self.adaptation.video_track(pattern)
        audio: MediaStreamTrack
        if c.audio_file is not None:
            audio = FileAudioTrack(
                c.audio_file, loop=c.audio_file_loop, samples=self._audio_samples
            )
        else:
            audio = ToneTrack()
        return self.adaptation.audio_track(audio)

    # ------------------------------------------------------------ remote media

    def _on_remote_track(
        self, call: _Call, transceiver: RTCRtpTransceiver, track: MediaStreamTrack
    ) -> None:
        if self._call is not call:
            return
        remote = call.negotiation.remote_track_for_mid(transceiver.mid)
        if remote is None:
            # Drained all the same, so that nothing piles up.
            self.log.warning("media on mid %s without a known track", transceiver.mid)
            track_id = f"unknown:{transceiver.mid}"
            stats = self._stats.inbound_track(track.kind, track_id, None, None)
        else:
            stats = self._stats.inbound_track(
                track.kind, remote.track_id, remote.user_id, remote.endpoint_id
            )
            self.log.info(
                "receiving %s track %s of %s",
                track.kind,
                remote.track_id,
                remote.user_id,
            )
        call.tracks[stats.track_id] = stats

        handle: RemoteTrack | None = None

        def count_bytes(frame: EncodedFrame) -> None:
            stats.bytes += len(frame.data)
            if handle is not None:
                handle.deliver_encoded(frame)

        tap = ReceiverTap(transceiver.receiver, count_bytes)
        tap.set_decoding(True)
        if self.plugins:
            info = RemoteTrackInfo(
                stats.track_id,
                track.kind,
                remote.endpoint_id if remote is not None else None,
                remote.user_id if remote is not None else None,
                transceiver.mid,
            )
            handle = RemoteTrack(
                info,
                request_keyframe=tap.request_keyframe,
                set_decoding=tap.set_decoding,
                receiver=transceiver.receiver,
            )
            self.plugins.track_added(handle)
        call.receivers.append((transceiver, stats))
        call.consumers.append(
            asyncio.create_task(self._consume(track, stats, tap), name=stats.track_id)
        )

    async def _consume(
        self, track: MediaStreamTrack, stats: InboundTrackStats, tap: ReceiverTap
    ) -> None:
        try:
            while not stats.ended:
                frame = await track.recv()
                self.plugins.deliver_decoded(stats.track_id, frame)
                if track.kind == "video":
                    stats.count_video(frame.width, frame.height)  # type: ignore[union-attr]
                else:
                    stats.count_audio(frame.samples, frame.sample_rate)  # type: ignore[union-attr]
                    self.adaptation.remote_audio(
                        stats.track_id, stats.from_user_id, frame
                    )
        except MediaStreamError:
            pass
        finally:
            stats.ended = True
            tap.close()

    # ------------------------------------------------------------ reports

    def _set_status(self, status: str, reason: str | None = None) -> None:
        if status == self.status and reason == self.reason:
            return
        self.status, self.reason = status, reason
        self.log.info("status %s%s", status, f" ({reason})" if reason else "")
        self._report(
            {"type": "status", "status": status, "reason": reason, "ts": time.time()}
        )
        self.report_stats()

    def report_stats(self) -> None:
        self._report(self.stats())

    async def _report_stats(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            await self._refresh_stats()
            self.report_stats()

    async def _refresh_stats(self) -> None:
        call = self._call
        if call is None:
            return
        for track_id, transceiver in list(call.senders.items()):
            out = self._stats.outbound.get(track_id)
            source = call.sources.get(transceiver.kind)
            if out is None:
                continue
            if source is not None:
                out.frames = getattr(source, "frames", 0)
            for entry in (await transceiver.sender.getStats()).values():
                if getattr(entry, "type", None) == "outbound-rtp":
                    out.packets = entry.packetsSent
                    out.bytes = entry.bytesSent
        for transceiver, inbound in list(call.receivers):
            for entry in (await transceiver.receiver.getStats()).values():
                if getattr(entry, "type", None) == "inbound-rtp":
                    inbound.packets = entry.packetsReceived
        if call.peer is not None:
            self._stats.selected_pairs = call.peer.selected_pairs()

    def _report(self, report: dict[str, Any]) -> None:
        if self._on_report is None:
            return
        try:
            self._on_report(report)
        except Exception:
            self.log.exception("report consumer failed")
