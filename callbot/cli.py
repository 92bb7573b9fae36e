"""The ``callbot`` command line: built-in commands plus those of other packages.

Other packages add commands through the entry-point group ``callbot.commands``.
Each entry point names an object that follows :class:`Command`; the CLI never
imports those packages by name.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import inspect
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "callbot.commands"

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_LOG_LEVEL = "INFO"
LOG_LEVEL_VARIABLE = "CALLBOT_LOG_LEVEL"


@runtime_checkable
class Command(Protocol):
    """One ``callbot`` subcommand.

    ``name`` is the word on the command line and ``help`` its one-line summary.
    ``add_arguments`` adds the command's options to its own subparser, and
    ``run`` does the work and returns the process exit code.
    """

    name: str
    help: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


class ServerCommand:
    """``callbot server``: the reference call server in the foreground."""

    name = "server"
    help = "run the reference call server"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--host",
            default="127.0.0.1",
            help="address the call socket listens on (keep it on loopback)",
        )
        parser.add_argument(
            "--port",
            type=int,
            default=4000,
            help="port of the call socket (ws://HOST:PORT/socket); 0 picks one",
        )
        parser.add_argument(
            "--room",
            dest="rooms",
            action="append",
            default=[],
            metavar="NAME",
            help="add a public room (repeatable); the lobby always exists",
        )
        parser.add_argument(
            "--admin-port",
            type=int,
            default=None,
            metavar="PORT",
            help=(
                "serve the admin HTTP (test control: rooms, participants, clock,"
                " crashes, network conditions) on 127.0.0.1:PORT; off if not given"
            ),
        )
        parser.add_argument(
            "--no-adaptive-quality",
            dest="adaptive_quality",
            action="store_false",
            help=(
                "start every call with adaptive quality off, as the server API's"
                " set_adaptive_quality(room, false): every participant is active"
                " (full video), as call QA's thresholds assume"
            ),
        )
        # The real server's sharp edges; each switch turns one off.
        parser.add_argument(
            "--no-duplicate-pushes",
            dest="duplicate_pushes",
            action="store_false",
            help="send each call push once (the real server sends most twice)",
        )
        parser.add_argument(
            "--lenient-join-ref",
            dest="strict_join_ref",
            action="store_false",
            help=(
                "accept pushes with a null join_ref on a channel joined with one"
                " (the real server drops them)"
            ),
        )
        parser.add_argument(
            "--no-crash-on-bad-event",
            dest="crash_on_bad_event",
            action="store_false",
            help=(
                "log and ignore an unknown or malformed call event (the real"
                " channel crashes on it)"
            ),
        )
        parser.add_argument(
            "--no-tier-request-crash",
            dest="quality_tier_request_crashes",
            action="store_false",
            help=(
                "drop the raw second copy of a quality_tier_request (the real"
                " server crashes the other participants' channels on it)"
            ),
        )
        parser.add_argument(
            "--hex-foundations-ok",
            dest="integer_foundations_only",
            action="store_false",
            help=(
                "accept ICE candidates whose foundation is not an integer (the"
                " real endpoint crashes on them)"
            ),
        )

    def run(self, args: argparse.Namespace) -> int:
        from callbot.server.app import serve
        from callbot.server.settings import ServerSettings

        settings = ServerSettings.model_validate(
            {
                "host": args.host,
                "port": args.port,
                "rooms": [{"name": name} for name in args.rooms],
                "admin_port": args.admin_port,
                "adaptive_quality": args.adaptive_quality,
                "duplicate_pushes": args.duplicate_pushes,
                "strict_join_ref": args.strict_join_ref,
                "crash_on_bad_event": args.crash_on_bad_event,
                "quality_tier_request_crashes": args.quality_tier_request_crashes,
                "integer_foundations_only": args.integer_foundations_only,
            }
        )
        with contextlib.suppress(KeyboardInterrupt):
            result: Any = serve(settings)
            if inspect.isawaitable(result):
                asyncio.run(_awaited(result))
        return 0


async def _awaited(awaitable: Any) -> None:
    await awaitable


class RunCommand:
    """``callbot run``: one bot in the foreground until Ctrl-C or its duration."""

    name = "run"
    help = "run one bot in a call in the foreground"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--server",
            required=True,
            metavar="URL",
            help="the call server's socket, ws://HOST:PORT/socket (or wss://)",
        )
        parser.add_argument(
            "--room", required=True, metavar="ROOM", help="the room whose call to join"
        )
        parser.add_argument(
            "--user-id", required=True, metavar="USER", help="the bot's user id"
        )
        parser.add_argument("--name", default=None, help="display name")
        parser.add_argument(
            "--duration",
            type=float,
            default=None,
            metavar="SECONDS",
            help="leave after this many seconds (default: until Ctrl-C)",
        )
        parser.add_argument(
            "--plugin",
            dest="plugins",
            action="append",
            default=[],
            metavar="NAME",
            help="run this plugin (repeatable), e.g. recorder",
        )
        parser.add_argument(
            "--plugin-config",
            dest="plugin_config",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=(
                "a config value of the plugin named last before it (repeatable;"
                " values are JSON where they parse, else strings)"
            ),
        )

        parser.add_argument(
            "--audio",
            default=None,
            metavar="FILE",
            help="publish this WAV or Ogg file (looped) instead of the tone",
        )
        parser.add_argument(
            "--attention",
            choices=("high", "medium", "low"),
            default="high",
            help="attention level sent to the server (low: as a hidden tab)",
        )
        parser.add_argument(
            "--tier-profile",
            choices=("browser", "server"),
            default="browser",
            help="how tiers change the video: as browsers do, or the server's table",
        )
        parser.add_argument(
            "--sensors",
            default=None,
            metavar="JSON|@FILE",
            help="sensor source, overlays and publishing (a SensorsConfig)",
        )
        parser.add_argument(
            "--viewer-token",
            default=None,
            metavar="TOKEN",
            help="draw live vitals from viewer:data:TOKEN (needs --overlay-sensor)",
        )
        parser.add_argument(
            "--overlay-sensor",
            default=None,
            metavar="SENSOR_ID",
            help="the sensor whose heart rate, ECG and respiration are drawn",
        )

    def run(self, args: argparse.Namespace) -> int:
        from callbot.bot.plugin import PluginError
        from callbot.errors import UsageError

        # Every option error is found before joining, and exits 2 as argparse's.
        try:
            check_server_url(args.server)
            argv = getattr(args, "argv", None)
            plugins = plugin_specs(sys.argv[1:] if argv is None else argv)
            sensors = sensors_option(args)
        except (PluginError, UsageError) as exc:
            print(f"callbot run: {exc}", file=sys.stderr)
            return 2
        return asyncio.run(self._run(args, plugins, sensors))

    async def _run(
        self, args: argparse.Namespace, plugins: list[Any], sensors: Any
    ) -> int:
        from callbot.bot.bot import Bot
        from callbot.bot.config import BotConfig

        config = BotConfig(
            server_url=args.server,
            room_id=args.room,
            user_id=args.user_id,
            display_name=args.name,
            duration=args.duration,
            plugins=plugins,
            sensors=sensors,
            audio_file=getattr(args, "audio", None),
            attention=getattr(args, "attention", "high"),
            tier_profile=getattr(args, "tier_profile", "browser"),
        )
        try:
            bot = Bot(config, on_report=print_live_event)
        except ValueError as exc:  # an unreadable --audio file
            print(f"callbot run: {exc}", file=sys.stderr)
            return 2

        # Ctrl-C asks the bot to leave; a second one stops at once.
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        interrupts = 0

        def on_interrupt() -> None:
            nonlocal interrupts
            interrupts += 1
            if interrupts == 1:
                print("leaving the call (Ctrl-C again to stop at once)", flush=True)
                bot.leave()
            elif task is not None:
                task.cancel()

        loop.add_signal_handler(signal.SIGINT, on_interrupt)
        loop.add_signal_handler(signal.SIGTERM, on_interrupt)
        try:
            await bot.run()
        except asyncio.CancelledError:
            print("stopped before the bot had left", file=sys.stderr)
            return 130
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)

        status = bot.status
        if status == "failed" and bot.reason:
            status = f"failed ({bot.reason})"
        print(format_summary(status, bot.stats()))
        return 0 if bot.status == "left" else 1


def print_live_event(report: dict[str, Any]) -> None:
    """One line for each change a user watches: speaking, tier, video settings."""
    if report.get("type") != "event":
        return
    event = report.get("event")
    if event == "speaking":
        print("speaking" if report.get("speaking") else "not speaking", flush=True)
    elif event == "video_settings":
        print(
            f"tier {report.get('tier')}: video {report.get('fps')} fps,"
            f" {int(report.get('max_bitrate') or 0) // 1000} kbps"
            + (", snapshots" if report.get("snapshots") else ""),
            flush=True,
        )


def check_server_url(url: str) -> None:
    """Refuse a ``--server`` that is not a ws:// or wss:// URL with a host."""
    from urllib.parse import urlsplit

    from callbot.errors import UsageError

    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise UsageError(
            f"--server must be a ws:// or wss:// URL such as"
            f" ws://127.0.0.1:4000/socket, not {url!r}"
        )


def sensors_option(args: argparse.Namespace) -> Any:
    """The ``SensorsConfig`` of ``--sensors`` or ``--viewer-token``, or None.

    Raises UsageError for an unreadable file, invalid JSON, an unknown key or
    a ``--viewer-token`` without ``--overlay-sensor``.
    """
    from pydantic import ValidationError

    from callbot.bot.sensor_feed import SensorsConfig
    from callbot.errors import UsageError
    from media.overlays.config import OverlayConfig

    text = getattr(args, "sensors", None)
    token = getattr(args, "viewer_token", None)
    sensor_id = getattr(args, "overlay_sensor", None)
    if text is not None and (token is not None or sensor_id is not None):
        raise UsageError(
            "--sensors and --viewer-token/--overlay-sensor exclude each other"
        )
    if text is not None:
        if text.startswith("@"):
            try:
                with open(text[1:], encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError) as exc:
                raise UsageError(f"--sensors: cannot read {text[1:]}: {exc}") from exc
        try:
            return SensorsConfig.model_validate_json(text)
        except ValidationError as exc:
            raise UsageError(f"--sensors: {one_line(exc)}") from exc
    if token is None:
        if sensor_id is not None:
            raise UsageError("--overlay-sensor needs --viewer-token")
        return None
    if sensor_id is None:
        raise UsageError("--viewer-token needs --overlay-sensor")
    return SensorsConfig.model_validate(
        {
            "source": {
                "kind": "viewer",
                "viewer_token": token,
                "sensor_ids": [sensor_id],
            },
            "overlay": OverlayConfig.vitals(sensor_id).model_dump(),
        }
    )


def one_line(exc: Any) -> str:
    """A pydantic ValidationError as one line: ``where: what; ...``."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error['msg']}" if where else str(error["msg"]))
    return "; ".join(parts) or str(exc)


def plugin_specs(argv: Sequence[str]) -> list[Any]:
    """The plugins of ``--plugin``/``--plugin-config`` in order, validated.

    Each ``--plugin-config`` belongs to the ``--plugin`` before it. Raises
    PluginError for an unknown plugin, a config without a plugin, or a config
    the plugin refuses.
    """
    from callbot.bot.config import PluginSpec
    from callbot.bot.plugin import PluginError, parse_config_pairs, validate_specs

    names: list[str] = []
    pairs: list[list[str]] = []
    words = list(argv)
    for i, word in enumerate(words):
        option, sep, inline = word.partition("=")
        if option not in ("--plugin", "--plugin-config"):
            continue
        value = inline if sep else (words[i + 1] if i + 1 < len(words) else "")
        if option == "--plugin":
            names.append(value)
            pairs.append([])
        elif not names:
            raise PluginError("--plugin-config must follow the --plugin it configures")
        else:
            pairs[-1].append(value)
    specs = [
        PluginSpec(name=name, config=parse_config_pairs(p))
        for name, p in zip(names, pairs, strict=True)
    ]
    validate_specs(specs)
    return specs


def format_summary(status: str, stats: dict[str, Any]) -> str:
    """A few lines telling what a bot did in its call."""
    lines = [f"status: {status}"]
    endpoint_id = stats.get("endpoint_id")
    if endpoint_id:
        lines.append(f"endpoint: {endpoint_id}")
    participants = stats.get("participants") or []
    lines.append("participants: " + (", ".join(participants) or "none"))
    if stats.get("tier") is not None:
        received = stats.get("snapshots_received") or {}
        lines.append(
            f"tier: {stats['tier']}, attention: {stats.get('attention')},"
            f" snapshots sent: {stats.get('snapshots_sent', 0)},"
            f" received: {sum(received.values()) if isinstance(received, dict) else 0}"
        )
    for track in stats.get("tracks") or []:
        if not isinstance(track, dict):
            continue
        lines.append("  " + _format_track(track))
    return "\n".join(lines)


def _format_track(track: dict[str, Any]) -> str:
    direction = track.get("direction", "?")
    kind = track.get("kind", "?")
    if direction == "inbound":
        head = f"received {kind} from {track.get('from_user_id') or '?'}:"
    else:
        head = f"sent {kind}:"
    parts = [head, f"{track.get('frames', 0)} frames"]
    parts.append(f"{track.get('packets', 0)} packets")
    if track.get("width") and track.get("height"):
        parts.append(f"{track['width']}x{track['height']}")
    if track.get("seconds") is not None:
        parts.append(f"{float(track['seconds']):.1f} s")
    return " ".join(parts)


BUILTIN_COMMANDS: tuple[Command, ...] = (ServerCommand(), RunCommand())


def discover_commands() -> list[Command]:
    """The commands other packages declare in the ``callbot.commands`` group."""
    found: list[Command] = []
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            command = entry_point.load()
        except Exception:
            logger.warning(
                "cannot load command %s (%s)",
                entry_point.name,
                entry_point.value,
                exc_info=True,
            )
            continue
        if not isinstance(command, Command):
            logger.warning(
                "entry point %s (%s) is not a callbot command",
                entry_point.name,
                entry_point.value,
            )
            continue
        found.append(command)
    return found


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Each option's help ends with its default, unless it has none to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        default = action.default
        if (
            text is None
            or "default" in text
            or not action.option_strings
            or default in (None, False, True, [], argparse.SUPPRESS)
        ):
            return text
        return f"{text} (default: %(default)s)"


def build_parser(commands: Sequence[Command]) -> argparse.ArgumentParser:
    """The argument parser for these commands; each is a subcommand."""
    parser = argparse.ArgumentParser(
        prog="callbot", description="Headless WebRTC call bots for Sensocto calls."
    )
    parser.add_argument(
        "--log-level",
        default=None,
        type=str.upper,
        choices=LOG_LEVELS,
        help=(
            "logging level (default: $CALLBOT_LOG_LEVEL, else INFO; the demo:"
            " WARNING); logs go to stderr"
        ),
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for command in commands:
        sub = subparsers.add_parser(
            command.name,
            help=command.help,
            description=command.help,
            formatter_class=DefaultsHelpFormatter,
        )
        command.add_arguments(sub)
        sub.set_defaults(handler=command)
    return parser


def all_commands() -> list[Command]:
    """The built-in commands followed by the discovered ones, one per name."""
    commands: list[Command] = list(BUILTIN_COMMANDS)
    names = {c.name for c in commands}
    for command in discover_commands():
        if command.name in names:
            logger.warning("ignoring a second command named %r", command.name)
            continue
        names.add(command.name)
        commands.append(command)
    return commands


# Libraries whose INFO lines are per candidate pair, transceiver or connection
# (and websockets' second "server listening"): shown only at DEBUG.
CHATTY_LOGGERS = ("aioice", "aiortc", "websockets")


def setup_logging(level: str) -> None:
    """Log to stderr, one line a record, so stdout stays for results."""
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    quiet_libraries(level)


def quiet_libraries(level: str) -> None:
    """aioice, aiortc and websockets at WARNING unless ``level`` is DEBUG."""
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(
            logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``callbot`` console script."""
    parser = build_parser(all_commands())
    args = parser.parse_args(argv)
    args.argv = None if argv is None else list(argv)
    if args.log_level is None and os.environ.get(LOG_LEVEL_VARIABLE):
        args.log_level = os.environ[LOG_LEVEL_VARIABLE].upper()
        if args.log_level not in LOG_LEVELS:
            parser.error(f"{LOG_LEVEL_VARIABLE} must be one of {', '.join(LOG_LEVELS)}")
    setup_logging(args.log_level or DEFAULT_LOG_LEVEL)
    command: Command = args.handler
    return command.run(args)


if __name__ == "__main__":
    sys.exit(main())
