"""Time from ``tier_changed`` to the receiver seeing the new frame rate.

Two bots (320x240) on the reference server in this process. The speaker's
tier is driven as real clients drive it: ``speaking_state`` and
``attention_state``. The receiver's decoded frames are timed; the new rate
counts as seen at the first inter-frame gap that fits it.

Run: .venv/bin/python benchmarks/bench_tier_latency.py [cycles]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from callbot.bot.bot import Bot
from callbot.bot.config import BotConfig
from callbot.server.app import ReferenceServer
from callbot.server.settings import ServerSettings

ROOM = "lobby"


def inbound_frames(bot: Bot, user_id: str) -> int:
    return sum(
        t["frames"]
        for t in bot.stats()["tracks"]
        if t["direction"] == "inbound"
        and t["kind"] == "video"
        and t.get("from_user_id") == user_id
        and not t["ended"]
    )


async def first_gap(
    bot: Bot, user_id: str, fits: Callable[[float], bool], timeout: float = 5.0
) -> float:
    """Monotonic time at which a frame arrives whose gap to the previous fits."""
    last_count, last_time = inbound_frames(bot, user_id), time.monotonic()
    deadline = last_time + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(0.002)
        count = inbound_frames(bot, user_id)
        if count != last_count:
            now = time.monotonic()
            if fits((now - last_time) / (count - last_count)):
                return now
            last_count, last_time = count, now
    raise TimeoutError("the new frame rate was not seen")


async def main(cycles: int) -> None:
    async with ReferenceServer(ServerSettings(port=0)) as server:
        tier_at: dict[str, float] = {}

        def on_report(report: dict[str, Any]) -> None:
            if report.get("event") == "tier_changed" and report["user_id"] == "speaker":
                tier_at[report["tier"]] = time.monotonic()

        def config(user_id: str) -> BotConfig:
            return BotConfig(
                server_url=server.url,
                room_id=ROOM,
                user_id=user_id,
                width=320,
                height=240,
            )

        receiver = Bot(config("receiver"))
        speaker = Bot(config("speaker"), on_report=on_report)
        tasks = [asyncio.create_task(b.run()) for b in (receiver, speaker)]
        try:
            while inbound_frames(receiver, "speaker") < 10:
                await asyncio.sleep(0.05)
            session = speaker._session
            assert session is not None
            steps: list[tuple[str, Callable[[], None], Callable[[float], bool]]] = [
                ("active", lambda: session.speaking_state(True), lambda g: g < 0.05),
                ("recent", lambda: session.speaking_state(False), lambda g: g > 0.05),
                ("idle", lambda: speaker.set_attention("low"), lambda g: g > 0.12),
                ("recent", lambda: speaker.set_attention("high"), lambda g: g < 0.1),
            ]
            results: dict[str, list[float]] = {}
            for _ in range(cycles):
                for tier, act, fits in steps:
                    tier_at.pop(tier, None)
                    act()
                    while tier not in tier_at:
                        await asyncio.sleep(0.001)
                    seen = await first_gap(receiver, "speaker", fits)
                    key = f"-> {tier}"
                    results.setdefault(key, []).append((seen - tier_at[tier]) * 1000)
                    await asyncio.sleep(1.0)
            for key, values in results.items():
                print(
                    f"tier_changed {key:<10} new rate seen after"
                    f" median {statistics.median(values):6.1f} ms,"
                    f" max {max(values):6.1f} ms (n={len(values)})"
                )
        finally:
            for bot in (receiver, speaker):
                bot.leave()
            await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
