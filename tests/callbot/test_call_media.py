"""Bots in their own processes meet on the reference server and exchange media."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from callbot.server.app import ReferenceServer
from callbot.server.settings import ServerSettings
from tests.worker_bots import WorkerBot, start_bots, stop_bots

pytestmark = pytest.mark.integration

ROOM = "lobby"
# Bots start in the viewer tier, where the browser profile sends 5 fps: the
# counts below hold at that rate.


@pytest.fixture
async def server() -> AsyncIterator[ReferenceServer]:
    async with ReferenceServer(ServerSettings(port=0)) as server:
        yield server


def host_of(address: str) -> str:
    return address.rsplit(":", 1)[0]


def candidate_address(candidate: str) -> str:
    return candidate.split()[4]


def receiving(bot: WorkerBot, other: str, frames: int, seconds: float) -> bool:
    return bot.video_frames(other) >= frames and bot.audio_seconds(other) >= seconds


async def test_two_bots_see_and_hear_each_other_over_loopback(
    server: ReferenceServer,
) -> None:
    bots = await start_bots(server.url, ROOM, "alice", "bob")
    alice, bob = bots
    try:
        await alice.wait_for(lambda: alice.status == "in_call", 10, "in_call")
        await bob.wait_for(lambda: bob.status == "in_call", 10, "in_call")
        # Within 20 s of joining: 60 decoded frames at 640x480, 2 s of audio.
        for bot, other in ((alice, "bob"), (bob, "alice")):
            await bot.wait_for(
                lambda b=bot, o=other: receiving(b, o, 60, 2.0),  # type: ignore[misc]
                20,
                f"media from {other}",
            )
            (video,) = bot.inbound("video", other)
            assert (video["width"], video["height"]) == (640, 480)

        # Every candidate the server got, and every selected pair on both sides,
        # is on loopback.
        assert server.received_candidates
        assert {candidate_address(c) for c in server.received_candidates} == {
            "127.0.0.1"
        }
        call = server.call(ROOM)
        assert call is not None
        for user_id in ("alice", "bob"):
            endpoint_id = call.endpoint_of(user_id)
            assert endpoint_id is not None
            stats = call.engine.endpoint_stats(endpoint_id)
            assert stats["selected_pairs"]
            for local, remote in stats["selected_pairs"]:
                assert host_of(local) == host_of(remote) == "127.0.0.1"
            published = stats["published"]
            assert sorted(t["kind"] for t in published.values()) == ["audio", "video"]
        for bot in bots:
            await bot.wait_for(lambda b=bot: bool(b.stats["ice"]["selected_pairs"]), 5)  # type: ignore[misc]
            for local, remote in bot.stats["ice"]["selected_pairs"]:
                assert host_of(local) == host_of(remote) == "127.0.0.1"
    finally:
        await stop_bots(bots)
    assert [bot.process and bot.process.returncode for bot in bots] == [0, 0]
    assert [bot.status for bot in bots] == ["left", "left"]


async def test_a_third_bot_joins_mid_call_and_its_leaving_ends_its_tracks(
    server: ReferenceServer,
) -> None:
    names = ("alice", "bob", "carol")
    bots = await start_bots(server.url, ROOM, "alice", "bob")
    try:
        for bot, other in ((bots[0], "bob"), (bots[1], "alice")):
            await bot.wait_for(lambda b=bot, o=other: receiving(b, o, 10, 1.0), 20)  # type: ignore[misc]
        carol = await WorkerBot(server.url, ROOM, "carol").start()
        bots.append(carol)
        for bot in bots:
            for other in names:
                if other != bot.user_id:
                    await bot.wait_for(
                        lambda b=bot, o=other: receiving(b, o, 10, 1.0),  # type: ignore[misc]
                        20,
                        f"media from {other}",
                    )

        code = await carol.leave()
        assert code == 0 and carol.status == "left"
        for bot in bots[:2]:
            await bot.wait_for(
                lambda b=bot: (
                    any(  # type: ignore[misc]
                        e["user_id"] == "carol" for e in b.events("participant_left")
                    )
                    and any(e["user_id"] == "carol" for e in b.events("tracks_removed"))
                    and all(t["ended"] for t in b.inbound("video", "carol"))
                    and all(t["ended"] for t in b.inbound("audio", "carol"))
                ),
                5,
                "carol's tracks to end",
            )
            (removed,) = [
                e for e in bot.events("tracks_removed") if e["user_id"] == "carol"
            ]
            assert len(removed["track_ids"]) == 2
        # The two who stay keep receiving each other.
        before = bots[0].video_frames("bob")
        await bots[0].wait_for(lambda: bots[0].video_frames("bob") > before + 10, 5)
    finally:
        await stop_bots(bots)


async def test_after_its_channel_crashes_the_bot_is_back_with_media_both_ways(
    server: ReferenceServer,
) -> None:
    bots = await start_bots(server.url, ROOM, "alice", "bob")
    alice, bob = bots
    try:
        for bot, other in ((alice, "bob"), (bob, "alice")):
            await bot.wait_for(lambda b=bot, o=other: receiving(b, o, 10, 1.0), 20)  # type: ignore[misc]
        first_endpoint = alice.stats["endpoint_id"]

        await server.crash_channel(ROOM, "alice")

        # Back in the call with a new endpoint, new tracks flowing both ways.
        def recovered() -> bool:
            return (
                alice.stats.get("joins") == 2
                and alice.status == "in_call"
                and alice.video_frames("bob") >= 3
                and bob.video_frames("alice") >= 3
                and alice.audio_seconds("bob") > 0.2
                and bob.audio_seconds("alice") > 0.2
            )

        await alice.wait_for(recovered, 5, "recovery with media")
        assert alice.stats["endpoint_id"] != first_endpoint
        assert any(e.get("user_id") == "alice" for e in bob.events("participant_left"))
    finally:
        await stop_bots(bots)


async def test_after_its_endpoint_crashes_the_bot_joins_the_call_again(
    server: ReferenceServer,
) -> None:
    bots = await start_bots(server.url, ROOM, "alice", "bob")
    alice, bob = bots
    try:
        for bot, other in ((alice, "bob"), (bob, "alice")):
            await bot.wait_for(lambda b=bot, o=other: receiving(b, o, 10, 1.0), 20)  # type: ignore[misc]

        await server.crash_endpoint(ROOM, "bob")

        await bob.wait_for(
            lambda: (
                bob.stats.get("joins") == 2
                and bob.video_frames("alice") >= 3
                and alice.video_frames("bob") >= 3
            ),
            5,
            "rejoin after the endpoint crash",
        )
        left = [e for e in alice.events("participant_left") if e["user_id"] == "bob"]
        assert left and left[0].get("crashed") is True
    finally:
        await stop_bots(bots)


async def test_media_events_the_bot_cannot_use_are_logged_and_the_call_goes_on(
    server: ReferenceServer,
) -> None:
    bots = await start_bots(server.url, ROOM, "alice", "bob")
    alice, _bob = bots
    try:
        await alice.wait_for(lambda: receiving(alice, "bob", 10, 1.0), 20)
        call = server.call(ROOM)
        assert call is not None
        endpoint_id = call.endpoint_of("alice")
        assert endpoint_id is not None

        call.on_media_event(endpoint_id, "{not json")
        call.on_media_event(endpoint_id, json.dumps({"type": "fancyNewEvent"}))
        call.on_media_event(
            endpoint_id, json.dumps({"type": "custom", "data": {"type": "sdpAnswer"}})
        )
        before = alice.video_frames("bob")
        await alice.wait_for(
            lambda: alice.video_frames("bob") > before + 10, 5, "media after garbage"
        )
        await asyncio.sleep(0.2)
        assert alice.status == "in_call"
        assert alice.stats["joins"] == 1
        log = "\n".join(alice.stderr)
        assert "cannot use" in log
        assert "fancyNewEvent" in log
    finally:
        await stop_bots(bots)


async def test_a_bot_whose_duration_ends_leaves_saying_so(
    server: ReferenceServer,
) -> None:
    bot = await WorkerBot(server.url, ROOM, "alice", duration=3).start()
    assert bot.process is not None
    code = await asyncio.wait_for(bot.process.wait(), 15)
    await asyncio.sleep(0.2)

    statuses = [
        (r["status"], r.get("reason")) for r in bot.reports if r["type"] == "status"
    ]
    assert code == 0
    assert ("leaving", "duration") in statuses
    assert statuses[-1][0] == "left"
