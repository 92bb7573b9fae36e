"""``callbot qa``: join a call as a QA bot, measure it, exit 0 on pass, 1 on fail.

The QA bot runs the ``qa`` plugin (found by name through the
``callbot.plugins`` entry points, like any plugin) for ``--duration``
seconds, then prints the checks; the plugin writes ``report.json``,
``report.html`` and ``junit.xml`` to ``--out``. Exit code 2: no report
(the bot could not join, or the ``qa`` plugin is not installed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import uuid
from pathlib import Path
from typing import Any

from callbot.bot.bot import Bot
from callbot.bot.config import BotConfig, PluginSpec
from callbot.bot.plugin import PluginError

logger = logging.getLogger(__name__)

PUBLISH = {
    "none": (False, False),
    "audio": (False, True),
    "video": (True, False),
    "both": (True, True),
}


class QaCommand:
    """``callbot qa --server URL --room R --duration S``."""

    name = "qa"
    help = "measure a call's media and give a pass/fail verdict"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--server", required=True, help="ws://HOST:PORT/socket")
        parser.add_argument("--room", required=True)
        parser.add_argument("--duration", type=float, default=30.0, metavar="SECONDS")
        parser.add_argument(
            "--thresholds", default=None, metavar="FILE", help="JSON thresholds"
        )
        parser.add_argument("--out", default="qa-report", metavar="DIR")
        parser.add_argument("--user-id", default=None)
        parser.add_argument("--token", default=None)
        parser.add_argument(
            "--publish",
            choices=sorted(PUBLISH),
            default="audio",
            help=(
                "what the QA bot publishes (default: audio, the tone, so that"
                " RTCP gives a round-trip time)"
            ),
        )
        parser.add_argument(
            "--ice-address",
            dest="ice_addresses",
            action="append",
            default=None,
            metavar="ADDRESS",
        )

    def run(self, args: argparse.Namespace) -> int:
        return asyncio.run(self.measure(args))

    async def measure(self, args: argparse.Namespace) -> int:
        """Run the QA bot; the exit code."""
        video, audio = PUBLISH[args.publish]
        plugin_config: dict[str, Any] = {"out": args.out}
        if args.thresholds:
            plugin_config["thresholds_file"] = args.thresholds
        config = BotConfig(
            server_url=args.server,
            room_id=args.room,
            user_id=args.user_id or f"qa-{uuid.uuid4().hex[:6]}",
            display_name="QA",
            token=args.token,
            duration=args.duration,
            ice_addresses=args.ice_addresses or ["127.0.0.1"],
            video=video,
            audio=audio,
            plugins=[PluginSpec(name="qa", config=plugin_config, essential=True)],
        )
        try:
            bot = Bot(config)
        except PluginError as exc:
            print(f"qa: {exc}")
            return 2
        await bot.run()
        path = Path(args.out) / "report.json"
        if not path.exists():
            print(f"qa: no report ({bot.status}: {bot.reason})")
            return 2
        report = json.loads(path.read_text())
        for check in report.get("checks", []):
            print(describe(check))
        passed = bool(report.get("passed"))
        print(f"qa: {'PASS' if passed else 'FAIL'} - reports in {args.out}")
        return 0 if passed else 1


def describe(check: dict[str, Any]) -> str:
    """One line for one check of report.json."""
    if check["passed"] is None:
        return f"  n/a  {check['name']} of {check['subject']}: not measured"
    word = "ok  " if check["passed"] else "FAIL"
    return (
        f"  {word} {check['name']} of {check['subject']}: {check['value']:g}"
        f" {check['unit']} (limit {check['limit']:g})"
    )


qa_command = QaCommand()
