"""Calls between the real browser client and bots on the reference server.

The browser is Sensocto's client stack (membrane-webrtc-js 0.7.1 + phoenix in
headless Chromium, see conftest.py); bots run as worker processes; the
reference server runs in the test process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aioice.ice
import pytest

from callbot.server.app import ReferenceServer
from callbot.server.settings import ServerSettings

from .conftest import BrowserPeers

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ROOM = "lobby"


class BotWorker:
    """A bot in its own process (``python -m callbot.bot.worker``)."""

    def __init__(self, process: asyncio.subprocess.Process, user_id: str) -> None:
        self.process = process
        self.user_id = user_id
        self.reports: list[dict[str, Any]] = []
        self.endpoint_id: str | None = None
        self.stats: dict[str, Any] = {}
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, server_url: str, user_id: str, log: Path) -> BotWorker:
        with log.open("ab") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "callbot.bot.worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
            )
        config = {
            "bot_id": user_id,
            "server_url": server_url,
            "room_id": ROOM,
            "user_id": user_id,
            "display_name": user_id,
        }
        assert process.stdin is not None
        process.stdin.write(json.dumps(config).encode() + b"\n")
        await process.stdin.drain()
        return cls(process, user_id)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            report = json.loads(line)
            self.reports.append(report)
            if report.get("type") == "joined":
                self.endpoint_id = report["endpoint_id"]
            elif report.get("type") == "stats":
                self.stats = report
            self._changed.set()
        self._changed.set()

    async def wait(
        self, predicate: Callable[[BotWorker], bool], timeout: float, what: str
    ) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if self.process.returncode is not None and self._reader.done():
                raise AssertionError(f"{self.user_id} exited before {what}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.user_id}: {what} not seen in {timeout} s; "
                    f"last stats {json.dumps(self.stats)[:2000]}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def inbound(self, user_id: str, kind: str) -> dict[str, Any]:
        """The latest stats of the track of that kind received from that user."""
        for track in self.stats.get("tracks", []):
            if (
                track.get("direction") == "inbound"
                and track.get("kind") == kind
                and track.get("from_user_id") == user_id
            ):
                return dict(track)
        return {}

    def events(self, event: str) -> list[dict[str, Any]]:
        return [
            r
            for r in self.reports
            if r.get("type") == "event" and r.get("event") == event
        ]

    async def stop(self) -> None:
        if self.process.returncode is None:
            assert self.process.stdin is not None
            try:
                self.process.stdin.write(b'{"cmd": "leave"}\n')
                await self.process.stdin.drain()
                self.process.stdin.close()
                await asyncio.wait_for(self.process.wait(), 10.0)
            except (TimeoutError, ConnectionError):
                self.process.kill()
                await self.process.wait()
        await self._reader


@pytest.fixture
async def server() -> AsyncIterator[ReferenceServer]:
    reference = ReferenceServer(ServerSettings(port=0))
    await reference.start()
    try:
        yield reference
    finally:
        await reference.stop()


class Bots:
    """The bot workers of one test, each logging to its own file."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[BotWorker] = []

    async def start(self, server: ReferenceServer, user_id: str) -> BotWorker:
        log = self.log_dir / f"{user_id}.log"
        bot = await BotWorker.start(server.url, user_id, log)
        self.started.append(bot)
        await bot.wait(lambda b: b.endpoint_id is not None, 20.0, "joined")
        return bot

    async def stop(self) -> None:
        for bot in self.started:
            await bot.stop()


@pytest.fixture
async def bots(tmp_path: Path) -> AsyncIterator[Bots]:
    fleet = Bots(tmp_path)
    try:
        yield fleet
    finally:
        await fleet.stop()


def receives(endpoint_id: str, kind: str, key: str, minimum: int) -> str:
    """A page expression: the remote track of ``kind`` from ``endpoint_id`` flows."""
    return (
        "(window.peerState.stats.latest?.inbound || []).some(s => "
        f"s.endpointId === {json.dumps(endpoint_id)} && s.kind === {json.dumps(kind)}"
        f" && s.{key} > {minimum})"
    )


PUBLISHED = (
    "window.peerState.localTracks.length === 2 && "
    "window.peerState.localTracks.every(t => t.trackId)"
)
# The selected pair is of the latest ICE generation on both ends: the
# browser's last offer and the server's last answer.
ON_LATEST_GENERATION = """(() => {
  const s = window.peerState;
  const pair = s.selectedPairChanges[s.selectedPairChanges.length - 1];
  return pair && s.offers.length > 0 && s.answers.length === s.offers.length
    && pair.local.ufrag === s.offers[s.offers.length - 1].ufrag
    && pair.remote.ufrag === s.answers[s.answers.length - 1].ufrag;
})()"""


async def expect(browser: BrowserPeers, user: str, until: str, timeout: float) -> None:
    if not await browser.wait(user, until, timeout):
        state = await browser.state(user)
        summary = {
            "phase": state["phase"],
            "errors": state["errors"],
            "offers": state["offers"],
            "answers": state["answers"],
            "selectedPairChanges": state["selectedPairChanges"],
            "received": received_types(state),
            "localTracks": state["localTracks"],
            "remoteTracksReady": state["remoteTracksReady"],
            "stats": state["stats"]["latest"],
            "console": state["console"][-20:],
        }
        raise AssertionError(
            f"{user}: `{until}` not met in {timeout} s:\n"
            + json.dumps(summary, indent=1)[:6000]
        )


async def expect_media_from(
    browser: BrowserPeers, user: str, endpoint_id: str, timeout: float
) -> None:
    """The page decodes > 30 frames of the endpoint's video, > 100 audio packets."""
    video = receives(endpoint_id, "video", "framesDecoded", 30)
    audio = receives(endpoint_id, "audio", "packetsReceived", 100)
    await expect(browser, user, f"{video} && {audio}", timeout)


def decodes_from(user_id: str) -> Callable[[BotWorker], bool]:
    """The bot decoded >= 30 frames of the user's video and >= 2 s of its audio."""

    def check(bot: BotWorker) -> bool:
        return (
            bot.inbound(user_id, "video").get("frames", 0) >= 30
            and bot.inbound(user_id, "audio").get("seconds", 0.0) >= 2.0
        )

    return check


def received_types(state: dict[str, Any]) -> list[str]:
    return [event["type"] for event in state["mediaEventsReceived"]]


async def test_browser_and_bot_exchange_audio_and_video(
    server: ReferenceServer, browser: BrowserPeers, bots: Bots
) -> None:
    await browser.open("alice", socket_url=server.url, room=ROOM, name="Alice")
    await expect(browser, "alice", PUBLISHED, 20.0)
    # Two rounds, one track each; the second restarts ICE, and the browser
    # moves to the new generation's pair.
    await expect(browser, "alice", ON_LATEST_GENERATION, 10.0)
    published = await browser.state("alice")
    rounds = published["offers"]
    assert [len(offer["midToTrackId"]) for offer in rounds] == [1, 2]

    bot = await bots.start(server, "bot-1")
    assert bot.endpoint_id is not None
    await expect_media_from(browser, "alice", bot.endpoint_id, 30.0)
    await bot.wait(decodes_from("alice"), 20.0, "30 frames and 2 s of audio of alice")
    await expect(browser, "alice", ON_LATEST_GENERATION, 10.0)

    state = await browser.state("alice")
    assert state["errors"] == []
    assert state["peerConnections"][0]["config"]["iceTransportPolicy"] == "all"
    # Every offer after the first restarts ICE (a new ufrag), and every answer
    # to it carries new server credentials (JSEP).
    offers, answers = state["offers"], state["answers"]
    assert len(offers) >= 2 and len(answers) == len(offers)
    assert len({offer["ufrag"] for offer in offers}) == len(offers)
    assert len({answer["ufrag"] for answer in answers}) == len(answers)
    # Browsers publish their tracks with metadata {} (Sensocto's call).
    for offer in offers:
        assert offer["trackIdToTrackMetadata"]
        assert all(meta == {} for meta in offer["trackIdToTrackMetadata"].values())
    # Candidates carry sdpMid, patched in as Sensocto's wrapper does.
    sent = [e["event"] for e in state["mediaEventsSent"] if e["type"] == "candidate"]
    assert sent and all(e["data"]["data"]["sdpMid"] == "0" for e in sent)


async def test_browser_joins_while_a_bot_publishes(
    server: ReferenceServer, browser: BrowserPeers, bots: Bots
) -> None:
    bot = await bots.start(server, "bot-1")
    assert bot.endpoint_id is not None
    await bot.wait(
        lambda b: (
            all(
                t.get("packets", 0) > 0
                for t in b.stats.get("tracks", [])
                if t.get("direction") == "outbound"
            )
            and len(b.stats.get("tracks", [])) == 2
        ),
        20.0,
        "publishing audio and video",
    )

    await browser.open("alice", socket_url=server.url, room=ROOM, name="Alice")
    await expect_media_from(browser, "alice", bot.endpoint_id, 30.0)

    state = await browser.state("alice")
    assert state["errors"] == []
    # The bot's tracks are announced by tracksAdded after connected.
    types = received_types(state)
    assert "connected" in types
    after = state["mediaEventsReceived"][types.index("connected") + 1 :]
    announced = [
        e["event"]["data"]
        for e in after
        if e["type"] == "tracksAdded"
        and e["event"]["data"]["endpointId"] == bot.endpoint_id
    ]
    assert announced and len(announced[0]["tracks"]) == 2
    added = [
        t for t in state["remoteTracksAdded"] if t["endpointId"] == bot.endpoint_id
    ]
    assert len(added) == 2 and all(t["afterConnected"] for t in added)
    ready = {(t["endpointId"], t["kind"]) for t in state["remoteTracksReady"]}
    assert ready == {(bot.endpoint_id, "audio"), (bot.endpoint_id, "video")}


async def test_two_browsers_and_a_bot_each_receive_both_others(
    server: ReferenceServer, browser: BrowserPeers, bots: Bots
) -> None:
    bot = await bots.start(server, "bot-1")
    assert bot.endpoint_id is not None
    await browser.open("alice", socket_url=server.url, room=ROOM, name="Alice")
    await browser.open("bob", socket_url=server.url, room=ROOM, name="Bob")
    await expect(browser, "alice", PUBLISHED, 20.0)
    await expect(browser, "bob", PUBLISHED, 20.0)

    alice = (await browser.state("alice"))["endpointId"]
    bob = (await browser.state("bob"))["endpointId"]
    for user, others in (
        ("alice", (bot.endpoint_id, bob)),
        ("bob", (bot.endpoint_id, alice)),
    ):
        for other in others:
            await expect_media_from(browser, user, other, 30.0)
    await bot.wait(
        lambda b: decodes_from("alice")(b) and decodes_from("bob")(b),
        20.0,
        "30 frames and 2 s of audio of alice and of bob",
    )
    for user in ("alice", "bob"):
        assert (await browser.state(user))["errors"] == []


async def test_browser_leaves_and_the_bot_sees_its_tracks_end(
    server: ReferenceServer, browser: BrowserPeers, bots: Bots
) -> None:
    bot = await bots.start(server, "bot-1")
    await browser.open("alice", socket_url=server.url, room=ROOM, name="Alice")
    await expect(browser, "alice", PUBLISHED, 20.0)
    await bot.wait(
        lambda b: (
            b.inbound("alice", "video").get("frames", 0) > 0
            and b.inbound("alice", "audio").get("frames", 0) > 0
        ),
        20.0,
        "media from alice",
    )
    alice = await browser.state("alice")
    alice_tracks = {t["trackId"] for t in alice["localTracks"]}

    await browser.leave("alice")
    await bot.wait(
        lambda b: (
            any(e.get("user_id") == "alice" for e in b.events("participant_left"))
            and b.inbound("alice", "video").get("ended") is True
            and b.inbound("alice", "audio").get("ended") is True
        ),
        15.0,
        "participant_left and alice's tracks ended",
    )
    removed = [e for e in bot.events("tracks_removed") if e["user_id"] == "alice"]
    assert removed and removed[0]["endpoint_id"] == alice["endpointId"]
    assert {t for e in removed for t in e["track_ids"]} == alice_tracks
    ended = {
        e["track_id"] for e in bot.events("track_ended") if e["user_id"] == "alice"
    }
    assert ended == alice_tracks
    # The bot's own tracks keep going.
    assert bot.process.returncode is None


def _address(text: str) -> str:
    """An IP address in one spelling (the browser brackets IPv6 ones)."""
    return str(ipaddress.ip_address(text.strip("[]")))


def _is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address.strip("[]")).is_loopback


def _on_loopback(pair: list[str] | tuple[str, str]) -> bool:
    """Whether both ends of a ``("host:port", "host:port")`` pair are loopback."""
    return all(_is_loopback(end.rsplit(":", 1)[0]) for end in pair)


async def test_every_selected_pair_is_on_loopback(
    server: ReferenceServer,
    browser: BrowserPeers,
    bots: Bots,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every datagram the server's ICE agents send, by destination.
    destinations: list[str] = []
    send_stun = aioice.ice.StunProtocol.send_stun
    send_data = aioice.ice.StunProtocol.send_data

    def record_stun(self: aioice.ice.StunProtocol, message: Any, addr: Any) -> None:
        destinations.append(_address(str(addr[0])))
        send_stun(self, message, addr)

    async def record_data(
        self: aioice.ice.StunProtocol, data: bytes, addr: Any
    ) -> None:
        destinations.append(_address(str(addr[0])))
        await send_data(self, data, addr)

    monkeypatch.setattr(aioice.ice.StunProtocol, "send_stun", record_stun)
    monkeypatch.setattr(aioice.ice.StunProtocol, "send_data", record_data)

    bot = await bots.start(server, "bot-1")
    assert bot.endpoint_id is not None
    await browser.open("alice", socket_url=server.url, room=ROOM, name="Alice")
    await expect(browser, "alice", PUBLISHED, 20.0)
    await expect_media_from(browser, "alice", bot.endpoint_id, 30.0)
    await bot.wait(
        lambda b: bool(b.stats.get("ice", {}).get("selected_pairs")), 5.0, "ICE"
    )
    state = await browser.state("alice")

    # Chromium gathers on its other interfaces too; every such candidate
    # reached the server, which dropped it (the ICE address policy) ...
    gathered = {_address(c["address"]) for c in state["localCandidates"]}
    others = {a for a in gathered if not _is_loopback(a)}
    received = {_address(c.split()[4]) for c in server.received_candidates}
    assert others <= received, (others, received)
    # ... so every selected pair is on loopback: the browser's, the bot's, and
    # the server's for both endpoints; the browser sent checks to no other
    # address; and the server's ICE agents sent nothing to any other address.
    latest = state["stats"]["latest"]
    pair = latest["selectedPair"]
    assert (pair["local"]["address"], pair["remote"]["address"]) == (
        "127.0.0.1",
        "127.0.0.1",
    )
    checked = {_address(p["remote"]["address"]) for p in latest["pairs"]}
    assert checked == {"127.0.0.1"}, latest["pairs"]
    bot_pairs = bot.stats["ice"]["selected_pairs"]
    assert bot_pairs and all(_on_loopback(p) for p in bot_pairs), bot_pairs
    call = server.call(ROOM)
    assert call is not None
    for endpoint_id in (state["endpointId"], bot.endpoint_id):
        selected = call.engine.endpoint_stats(endpoint_id)["selected_pairs"]
        assert selected and all(_on_loopback(p) for p in selected), selected
    assert destinations, "the server's ICE agents sent nothing"
    assert set(destinations) == {"127.0.0.1"}, set(destinations)
