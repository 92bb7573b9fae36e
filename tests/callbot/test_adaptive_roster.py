"""Others' tiers and speaking in the roster; the worker's attention command."""

from __future__ import annotations

import asyncio
import io
from typing import Any

from callbot.bot.worker import _read_commands
from callbot.call import events as ev
from callbot.call.session import Roster


def roster_of(*user_ids: str) -> Roster:
    roster = Roster()
    roster.replace({u: {"endpoint_id": f"{u}_1", "tier": "viewer"} for u in user_ids})
    return roster


def test_tier_and_speaking_pushes_update_the_participant() -> None:
    roster = roster_of("a", "b")
    assert roster.apply(ev.TierChanged(user_id="a", tier="active"))
    assert roster.apply(ev.ParticipantSpeaking(user_id="a", speaking=True))
    assert not roster.apply(ev.ParticipantSpeaking(user_id="a", speaking=True))
    a = roster.get("a")
    assert a is not None and (a.tier, a.speaking) == ("active", True)
    b = roster.get("b")
    assert b is not None and (b.tier, b.speaking) == ("viewer", False)


def test_adaptive_quality_off_makes_everyone_active() -> None:
    roster = roster_of("a", "b")
    assert roster.apply(ev.AdaptiveQualityChanged(enabled=False))
    assert {p.tier for p in roster.participants.values()} == {"active"}
    assert not roster.apply(ev.AdaptiveQualityChanged(enabled=False))
    assert not roster.apply(ev.AdaptiveQualityChanged(enabled=True))


class FakeBot:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def leave(self) -> None:
        self.calls.append(("leave", None))

    def set_attention(self, level: str) -> None:
        self.calls.append(("attention", level))


async def test_worker_attention_command_reaches_the_bot() -> None:
    bot = FakeBot()
    stdin = io.StringIO(
        '{"cmd": "attention", "level": "low"}\n'
        '{"cmd": "attention", "level": "sleepy"}\n'
        '{"cmd": "attention", "level": "high"}\n'
    )
    loop = asyncio.get_running_loop()
    await asyncio.to_thread(_read_commands, bot, loop, stdin)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    # Closing stdin makes the worker leave.
    assert bot.calls == [("attention", "low"), ("attention", "high"), ("leave", None)]
