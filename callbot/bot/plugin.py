"""Plugins: bot behaviours loaded by name, with hooks for the call's life.

A plugin is a :class:`Plugin` subclass with a pydantic config model, found
through the entry-point group ``callbot.plugins``; the core never imports a
plugin module by name. Every hook may be a plain method or a coroutine. Hooks
of one plugin run one at a time, in the order the events happened, in a task
of their own, so a slow plugin never holds up the call. Encoded and decoded
frames are the exception: they are delivered inline, on the hot path, and a
frame consumer must be quick.

An exception in a hook is logged with the plugin's name and reported as a
``plugin_error`` event; the bot goes on, unless the plugin is essential, when
the bot leaves and fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

from aiortc import MediaStreamTrack
from av.frame import Frame
from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler, ValidationError
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from callbot.bot.config import PluginSpec
from callbot.errors import CallbotError
from callbot.rtc.tap import EncodedFrame
from callbot.sensors.measurements import Measurement

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "callbot.plugins"
CLOSE_TIMEOUT = 5.0
"""Seconds the bot waits for its plugins to finish when it leaves."""

Log = logging.Logger | logging.LoggerAdapter[logging.Logger]
EncodedConsumer = Callable[[EncodedFrame], None]
DecodedConsumer = Callable[[Frame], None]


class PluginError(CallbotError):
    """A plugin cannot be found, loaded or configured."""


class PluginConfig(BaseModel):
    """Base of every plugin's config model; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


HostPathAccess = Literal["read", "write"]


@dataclass(frozen=True)
class HostPath:
    """Marks a config field whose value names a path on the bot's host.

    ``read``: a file (or directory) the plugin reads; ``write``: one it creates
    or writes into. Over the REST API every marked value is confined to the
    control plane's files root (``api/hostpaths.py``); ``callbot run`` takes
    any path. Use it as ``Annotated[str, HostPath("write")]``, or through
    :data:`ReadPath` / :data:`WritePath`; it also works inside ``| None``,
    lists, dicts and nested models.
    """

    access: HostPathAccess

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["host_path"] = self.access
        return schema


ReadPath = Annotated[str, HostPath("read")]
"""A config field naming a host file the plugin reads."""

WritePath = Annotated[str, HostPath("write")]
"""A config field naming a host file or directory the plugin writes."""


@dataclass(frozen=True)
class RemoteTrackInfo:
    """A remote track the bot receives."""

    track_id: str
    kind: str
    endpoint_id: str | None
    user_id: str | None
    mid: str | None = None


class RemoteTrack:
    """A remote track as plugins see it: its ids and its frames.

    ``on_encoded`` gets every encoded frame straight from the receiver (no
    decoding); ``on_decoded`` gets decoded frames and switches decoding on
    for this track while anyone listens.
    """

    def __init__(
        self,
        info: RemoteTrackInfo,
        *,
        request_keyframe: Callable[[], None] | None = None,
        set_decoding: Callable[[bool], None] | None = None,
        receiver: Any = None,
    ) -> None:
        self.info = info
        # The aiortc RTCRtpReceiver, for plugins that read RTP-level statistics.
        self.receiver = receiver
        self.ended = False
        self._encoded: list[tuple[str, EncodedConsumer]] = []
        self._decoded: list[tuple[str, DecodedConsumer]] = []
        self._request_keyframe = request_keyframe
        self._set_decoding = set_decoding
        self._on_error: Callable[[str, str, BaseException], None] | None = None

    @property
    def track_id(self) -> str:
        return self.info.track_id

    @property
    def kind(self) -> str:
        return self.info.kind

    @property
    def wants_decoded(self) -> bool:
        return bool(self._decoded)

    def on_encoded(self, consumer: EncodedConsumer, *, owner: str = "") -> None:
        """Call ``consumer`` with every encoded frame of this track.

        ``owner`` names the plugin in error reports; a plugin's bound method
        names its plugin by itself.
        """
        self._encoded.append((owner or _owner_of(consumer), consumer))

    def on_decoded(self, consumer: DecodedConsumer, *, owner: str = "") -> None:
        """Call ``consumer`` with every decoded frame; decoding is switched on."""
        self._decoded.append((owner or _owner_of(consumer), consumer))
        if self._set_decoding is not None:
            self._set_decoding(True)

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe (video only, rate-limited)."""
        if self._request_keyframe is not None:
            self._request_keyframe()

    def deliver_encoded(self, frame: EncodedFrame) -> None:
        """Hand one encoded frame to the consumers (called by the bot)."""
        for owner, consumer in self._encoded:
            try:
                consumer(frame)
            except Exception as exc:
                self._failed(owner, "on_encoded", exc)

    def deliver_decoded(self, frame: Frame) -> None:
        """Hand one decoded frame to the consumers (called by the bot)."""
        for owner, consumer in self._decoded:
            try:
                consumer(frame)
            except Exception as exc:
                self._failed(owner, "on_decoded", exc)

    def _failed(self, owner: str, hook: str, exc: BaseException) -> None:
        if self._on_error is not None:
            self._on_error(owner, hook, exc)
        else:
            logger.exception("frame consumer of %s failed", owner or "?")


def _owner_of(consumer: Callable[..., Any]) -> str:
    plugin = getattr(consumer, "__self__", None)
    if isinstance(plugin, Plugin):
        return plugin.name or type(plugin).__name__
    return ""


@dataclass
class PluginContext:
    """What a plugin knows about the bot that runs it."""

    bot_id: str
    room_id: str
    user_id: str
    log: Log
    report: Callable[[dict[str, Any]], None] = field(default=lambda report: None)
    clock: Callable[[], float] = time.time
    """Wall-clock seconds; the one clock plugins put in their outputs."""


class Plugin:
    """Base class of every plugin. Override the hooks you need.

    Each hook may be ``def`` or ``async def``. ``name`` is the entry-point
    name; ``config_model`` validates the ``config`` mapping given at start.
    An essential plugin's failure makes the bot leave and fail.
    """

    name: ClassVar[str] = ""
    config_model: ClassVar[type[PluginConfig]] = PluginConfig
    essential: ClassVar[bool] = False

    def __init__(self, config: PluginConfig, context: PluginContext) -> None:
        self.config = config
        self.context = context

    def on_joined(self, endpoint_id: str) -> Awaitable[None] | None:
        """The bot joined the call as ``endpoint_id`` (again after a rejoin)."""
        return None

    def on_participant_joined(
        self, user_id: str, endpoint_id: str, display_name: str | None
    ) -> Awaitable[None] | None:
        """Another participant joined the call."""
        return None

    def on_participant_left(
        self, user_id: str, crashed: bool
    ) -> Awaitable[None] | None:
        """Another participant left the call (or its endpoint crashed)."""
        return None

    def on_track_added(self, track: RemoteTrack) -> Awaitable[None] | None:
        """A remote track started; subscribe to its frames here."""
        return None

    def on_track_ended(self, track: RemoteTrackInfo) -> Awaitable[None] | None:
        """A remote track ended: its publisher removed it, left, or the call ended."""
        return None

    def on_snapshot(
        self, user_id: str, jpeg: bytes, width: int, height: int, timestamp: float
    ) -> Awaitable[None] | None:
        """A viewer-tier snapshot of ``user_id`` (``timestamp`` in seconds)."""
        return None

    def on_tier_changed(self, user_id: str, tier: str) -> Awaitable[None] | None:
        """``user_id``'s tier changed (the bot's own included)."""
        return None

    def on_speaking(self, user_id: str, speaking: bool) -> Awaitable[None] | None:
        """``user_id`` started or stopped speaking."""
        return None

    def on_measurements(
        self, measurements: Sequence[Measurement]
    ) -> Awaitable[None] | None:
        """New measurements from the bot's sensor feed (``BotConfig.sensors``).

        Only plugins that override this hook are sent them.
        """
        return None

    def on_leaving(self) -> Awaitable[None] | None:
        """The bot leaves: finish and close everything before returning."""
        return None

    def source(self, kind: str) -> MediaStreamTrack | None:
        """A track the bot publishes instead of its own ``kind`` source, or None.

        Called (synchronously) each time the bot sets up its sending tracks.
        The track goes to the sender as it is: it may return decoded frames,
        which aiortc encodes, or ``av.Packet`` s, which it only packetizes.
        """
        return None


# ---------------------------------------------------------------- discovery


def available_plugins() -> dict[str, importlib.metadata.EntryPoint]:
    """The plugins installed in the ``callbot.plugins`` group, by name."""
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    return {entry_point.name: entry_point for entry_point in found}


def load_plugin_class(
    name: str, registry: Mapping[str, type[Plugin]] | None = None
) -> type[Plugin]:
    """The plugin class registered as ``name``; PluginError if there is none.

    ``registry`` (plugins given in code, by name) is looked up first.
    """
    if registry is not None and name in registry:
        return registry[name]
    entry_point = available_plugins().get(name)
    if entry_point is None:
        known = ", ".join(sorted(available_plugins())) or "none"
        raise PluginError(f"unknown plugin {name!r} (installed: {known})")
    try:
        loaded = entry_point.load()
    except Exception as exc:
        raise PluginError(f"plugin {name!r} cannot be loaded: {exc}") from exc
    if not (isinstance(loaded, type) and issubclass(loaded, Plugin)):
        raise PluginError(f"entry point {name!r} is not a callbot Plugin class")
    return loaded


def validate_spec(
    spec: PluginSpec, registry: Mapping[str, type[Plugin]] | None = None
) -> tuple[type[Plugin], PluginConfig]:
    """The plugin class and its validated config; PluginError if either fails."""
    cls = load_plugin_class(spec.name, registry)
    try:
        config = cls.config_model.model_validate(spec.config)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}"
            for e in exc.errors()
        )
        raise PluginError(f"plugin {spec.name!r}: bad config: {problems}") from exc
    return cls, config


def validate_specs(
    specs: Sequence[PluginSpec], registry: Mapping[str, type[Plugin]] | None = None
) -> None:
    """Check every spec at once (for POST /bots and ``callbot run``)."""
    for spec in specs:
        validate_spec(spec, registry)


def parse_config_pairs(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings as a config mapping; values are JSON if they parse.

    ``a.b=1`` sets a nested key.
    """
    import json

    config: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise PluginError(f"plugin config {pair!r} is not KEY=VALUE")
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        target = config
        *parents, last = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
            if not isinstance(target, dict):
                raise PluginError(f"plugin config key {key!r} clashes with another")
        target[last] = value
    return config


# ---------------------------------------------------------------- host


@dataclass
class _Loaded:
    plugin: Plugin
    essential: bool
    queue: asyncio.Queue[tuple[str, tuple[Any, ...]] | None] = field(
        default_factory=asyncio.Queue
    )
    task: asyncio.Task[None] | None = None
    failed: bool = False


class PluginHost:
    """The bot's plugins: runs their hooks in order and isolates their failures.

    Args:
        on_essential_failure: called with a reason once an essential plugin
            fails; the bot then leaves.
        registry: plugin classes by name, looked up before the entry points.
    """

    def __init__(
        self,
        specs: Sequence[PluginSpec],
        context: PluginContext,
        *,
        on_essential_failure: Callable[[str], None] | None = None,
        registry: Mapping[str, type[Plugin]] | None = None,
    ) -> None:
        self.context = context
        self._on_essential_failure = on_essential_failure
        self._plugins: list[_Loaded] = []
        self._tracks: dict[str, RemoteTrack] = {}
        self._closed = False
        for spec in specs:
            cls, config = validate_spec(spec, registry)
            essential = cls.essential if spec.essential is None else spec.essential
            try:
                plugin = cls(config, context)
            except Exception as exc:
                raise PluginError(f"plugin {spec.name!r} cannot start: {exc}") from exc
            self._plugins.append(_Loaded(plugin, essential))
        self.errors = 0

    @property
    def names(self) -> list[str]:
        return [self._name(loaded.plugin) for loaded in self._plugins]

    def __bool__(self) -> bool:
        return bool(self._plugins)

    def start(self) -> None:
        """Start each plugin's hook task (inside the running loop)."""
        for loaded in self._plugins:
            if loaded.task is None:
                name = self._name(loaded.plugin)
                loaded.task = asyncio.create_task(
                    self._run(loaded), name=f"plugin {name}"
                )

    def emit(self, hook: str, *args: Any) -> None:
        """Queue ``hook(*args)`` for every plugin."""
        if self._closed:
            return
        for loaded in self._plugins:
            if not loaded.failed or not loaded.essential:
                loaded.queue.put_nowait((hook, args))

    def measurements(self, measurements: Sequence[Measurement]) -> None:
        """Hand the bot's sensor measurements to the plugins that take them."""
        if self._closed or not measurements:
            return
        for loaded in self._plugins:
            takes = type(loaded.plugin).on_measurements is not Plugin.on_measurements
            if takes and (not loaded.failed or not loaded.essential):
                loaded.queue.put_nowait(("on_measurements", (measurements,)))

    def track_added(self, track: RemoteTrack) -> None:
        """Tell the plugins of a new remote track."""
        track._on_error = self._frame_consumer_failed
        self._tracks[track.track_id] = track
        self.emit("on_track_added", track)

    def track_ended(self, track_id: str) -> None:
        """Tell the plugins a remote track ended; only the first call counts."""
        track = self._tracks.get(track_id)
        if track is None or track.ended:
            return
        track.ended = True
        self.emit("on_track_ended", track.info)

    def participant_left(self, user_id: str) -> None:
        """End the tracks of a participant who left."""
        for track in list(self._tracks.values()):
            if track.info.user_id == user_id:
                self.track_ended(track.track_id)

    def source(self, kind: str) -> MediaStreamTrack | None:
        """The first plugin's replacement for the bot's ``kind`` source, if any."""
        for loaded in self._plugins:
            try:
                track = loaded.plugin.source(kind)
            except Exception as exc:
                self._hook_failed(loaded, "source", exc)
                continue
            if track is not None:
                return track
        return None

    def deliver_decoded(self, track_id: str, frame: object) -> None:
        """Hand a decoded frame of ``track_id`` to whoever listens."""
        track = self._tracks.get(track_id)
        if track is not None and track.wants_decoded and isinstance(frame, Frame):
            track.deliver_decoded(frame)

    def tracks_ended(self) -> None:
        """End every track still running (the endpoint is gone)."""
        for track_id in list(self._tracks):
            self.track_ended(track_id)

    async def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """End every track, run ``on_leaving`` and wait for the hooks to finish."""
        if self._closed:
            return
        self.tracks_ended()
        self.emit("on_leaving")
        self._closed = True
        tasks = []
        for loaded in self._plugins:
            loaded.queue.put_nowait(None)
            if loaded.task is not None:
                tasks.append(loaded.task)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            self.context.log.warning(
                "plugin task %s did not finish within %.1f s", task.get_name(), timeout
            )
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, loaded: _Loaded) -> None:
        while True:
            item = await loaded.queue.get()
            if item is None:
                return
            hook, args = item
            try:
                result = getattr(loaded.plugin, hook)(*args)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._hook_failed(loaded, hook, exc)

    def _frame_consumer_failed(self, owner: str, hook: str, exc: BaseException) -> None:
        for loaded in self._plugins:
            if self._name(loaded.plugin) == owner:
                self._hook_failed(loaded, hook, exc)
                return
        self.context.log.error("frame consumer %s failed: %r", owner, exc)

    def _hook_failed(self, loaded: _Loaded, hook: str, exc: BaseException) -> None:
        name = self._name(loaded.plugin)
        self.errors += 1
        self.context.log.error(
            "plugin %s failed in %s: %r", name, hook, exc, exc_info=exc
        )
        self.context.report(
            {
                "type": "event",
                "event": "plugin_error",
                "plugin": name,
                "hook": hook,
                "error": repr(exc),
                "essential": loaded.essential,
                "ts": self.context.clock(),
            }
        )
        if loaded.essential and not loaded.failed:
            loaded.failed = True
            if self._on_essential_failure is not None:
                self._on_essential_failure(f"plugin {name} failed in {hook}: {exc!r}")

    @staticmethod
    def _name(plugin: Plugin) -> str:
        return plugin.name or type(plugin).__name__
