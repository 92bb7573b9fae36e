"""``callbot demo``: two bots meet in one call, driven through the REST API.

bot-1 says a sentence (the ``speech`` clip, played once): the call sees it
speaking, so its tier goes active and then recent. bot-2 publishes a tone,
which is not speech, and stays a viewer, sending snapshots besides its video.
Each bot's tier changes come from its ``video_settings`` events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import socket
import sys
import time
from collections.abc import AsyncIterator
from typing import Any, TextIO

import httpx
import uvicorn

from api.app import create_app
from api.keys import create_key
from api.launcher import LocalProcessLauncher
from api.store import Store

logger = logging.getLogger(__name__)

ROOM_ID = "lobby"
# user id, display name, further fields of POST /bots
BOTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("bot-1", "Bot 1", {"audio_clip": "speech"}),
    ("bot-2", "Bot 2", {}),
)
LEAVE_WAIT = 15.0

# Each bot's tiers in order, as {"tier", "at"} (seconds into the demo), by bot id.
TierChanges = dict[str, list[dict[str, Any]]]


@contextlib.asynccontextmanager
async def control_plane(
    launcher: LocalProcessLauncher,
) -> AsyncIterator[tuple[str, str]]:
    """Serve the REST app on a free loopback port; yields its URL and an API key."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # The demo's own in-memory store, with a key made for this run only.
    store = Store("sqlite://")
    _, key = create_key(store, "demo")
    config = uvicorn.Config(
        create_app(launcher, store=store, own_store=True),
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="control-plane")
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the control plane stopped while starting")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}", key
    finally:
        server.should_exit = True
        await task
        sock.close()


def received(bot: dict[str, Any]) -> list[dict[str, Any]]:
    """What a bot received, one entry per kind and sender."""
    totals: dict[tuple[str, str], dict[str, Any]] = {}
    for track in bot.get("tracks", []):
        if track.get("direction") != "inbound":
            continue
        kind = track["kind"]
        sender = track.get("from_user_id") or "?"
        entry = totals.setdefault(
            (kind, sender),
            {"kind": kind, "from_user_id": sender, "frames": 0}
            if kind == "video"
            else {"kind": kind, "from_user_id": sender, "seconds": 0.0},
        )
        # A renegotiated call gives a sender a new track; the totals add up.
        if kind == "video":
            entry["frames"] += int(track.get("frames", 0))
            if track.get("width") and track.get("height"):
                entry["width"] = track["width"]
                entry["height"] = track["height"]
        else:
            entry["seconds"] = round(
                entry["seconds"] + float(track.get("seconds") or 0.0), 2
            )
    return sorted(totals.values(), key=lambda e: (e["from_user_id"], e["kind"]))


def summarize(
    room_id: str, bots: list[dict[str, Any]], tiers: TierChanges | None = None
) -> dict[str, Any]:
    """The demo's result: ok when every bot left and got the others' media."""
    users = [bot["user_id"] for bot in bots]
    entries = []
    ok = bool(bots)
    for bot in bots:
        got = received(bot)
        for other in users:
            if other == bot["user_id"]:
                continue
            video = sum(
                e["frames"]
                for e in got
                if e["kind"] == "video" and e["from_user_id"] == other
            )
            audio = sum(
                e["seconds"]
                for e in got
                if e["kind"] == "audio" and e["from_user_id"] == other
            )
            ok = ok and video > 0 and audio > 0
        ok = ok and bot["status"] == "left"
        entry: dict[str, Any] = {
            "id": bot["id"],
            "user_id": bot["user_id"],
            "final_status": bot["status"],
            "received": got,
            "tier_changes": list((tiers or {}).get(bot["id"], [])),
            "snapshots_received": dict(bot.get("snapshots_received") or {}),
        }
        if bot.get("reason"):
            entry["reason"] = bot["reason"]
        entries.append(entry)
    return {"ok": ok, "room_id": room_id, "bots": entries}


def tier_path(changes: list[dict[str, Any]]) -> str:
    """A bot's tiers in order: ``viewer -> active -> recent``."""
    return " -> ".join(change["tier"] for change in changes)


def format_snapshots(received: dict[str, int]) -> str:
    return ", ".join(f"{count} from {user}" for user, count in sorted(received.items()))


def format_progress(elapsed: float, bots: list[dict[str, Any]]) -> str:
    """One line: every bot's status, tier and the media it sends and receives."""
    parts = []
    for bot in bots:
        text = f"{bot['user_id']} {bot['status']}"
        if bot.get("tier"):
            text += f", tier {bot['tier']}"
        if bot.get("speaking"):
            text += " (speaking)"
        sent = sum(
            int(t.get("frames", 0))
            for t in bot.get("tracks", [])
            if t.get("direction") == "outbound" and t.get("kind") == "video"
        )
        if sent:
            text += f", sent {sent} frames"
        for entry in received(bot):
            if entry["kind"] == "video":
                size = (
                    f" {entry['width']}x{entry['height']}" if "width" in entry else ""
                )
                text += f", video {entry['frames']} frames{size}"
            else:
                text += f", audio {entry['seconds']:.1f} s"
        snapshots = bot.get("snapshots_received") or {}
        if snapshots:
            text += f", snapshots {format_snapshots(snapshots)}"
        parts.append(text)
    return f"[{elapsed:4.0f} s] " + " | ".join(parts)


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"summary of room {summary['room_id']}:"]
    if summary.get("error"):
        lines.append(f"  the demo failed: {summary['error']}")
    for bot in summary["bots"]:
        line = f"  {bot['user_id']} ({bot['id']}): {bot['final_status']}"
        if bot.get("reason"):
            line += f" ({bot['reason']})"
        lines.append(line)
        for entry in bot["received"]:
            if entry["kind"] == "video":
                size = (
                    f" at {entry['width']}x{entry['height']}"
                    if "width" in entry
                    else ""
                )
                amount = f"{entry['frames']} frames{size}"
            else:
                amount = f"{entry['seconds']:.1f} s"
            lines.append(
                f"    received {entry['kind']} from {entry['from_user_id']}: {amount}"
            )
        if bot.get("tier_changes"):
            lines.append(f"    tiers: {tier_path(bot['tier_changes'])}")
        snapshots = format_snapshots(bot.get("snapshots_received") or {})
        lines.append(f"    snapshots received: {snapshots or 'none'}")
    lines.append(
        "ok: every bot received the others' audio and video and left"
        if summary["ok"]
        else "NOT ok: some bot missed media or did not leave cleanly"
    )
    return "\n".join(lines)


async def _snapshot(client: httpx.AsyncClient, ids: list[str]) -> list[dict[str, Any]]:
    bots = []
    for bot_id in ids:
        response = await client.get(f"/bots/{bot_id}")
        response.raise_for_status()
        bots.append(response.json())
    return bots


async def _follow_tiers(
    client: httpx.AsyncClient,
    ids: list[str],
    tiers: TierChanges,
    after: dict[str, int],
    started: float,
) -> list[str]:
    """Read the bots' new video_settings events; lines naming each tier change."""
    lines = []
    for bot_id in ids:
        while True:
            response = await client.get(
                f"/bots/{bot_id}/events",
                params={"after": after.get(bot_id, 0), "limit": 500},
            )
            response.raise_for_status()
            page = response.json()
            for event in page["events"]:
                after[bot_id] = event["seq"]
                tier = event["data"].get("tier")
                changes = tiers.setdefault(bot_id, [])
                if event["type"] != "video_settings" or not tier:
                    continue
                if changes and changes[-1]["tier"] == tier:
                    continue
                at = round(event["ts"] - started, 1)
                if changes:
                    lines.append(
                        f"  {bot_id}: tier {changes[-1]['tier']} -> {tier} at {at} s"
                    )
                changes.append({"tier": tier, "at": at})
            if page["next_after"] is None:
                break
    return lines


async def run_demo(
    *, duration: float = 10.0, as_json: bool = False, log_level: str = "WARNING"
) -> dict[str, Any]:
    """Run the whole demo and return its summary (printed as it goes).

    With ``as_json`` the progress goes to stderr, so that stdout is exactly
    one line: the summary as JSON.
    """
    progress = sys.stderr if as_json else sys.stdout
    try:
        summary = await _run(duration, log_level, progress)
    except Exception as exc:
        # --json promises a last line a script can parse, whatever happened.
        logger.exception("the demo failed")
        summary = failed_summary(f"{type(exc).__name__}: {exc}")

    if not as_json:
        print(format_summary(summary), flush=True)
    else:
        print(json.dumps(summary), flush=True)
    return summary


def failed_summary(error: str) -> dict[str, Any]:
    """The summary of a demo that could not run to the end."""
    return {"ok": False, "error": error, "room_id": ROOM_ID, "bots": []}


async def _run(duration: float, log_level: str, progress: TextIO) -> dict[str, Any]:
    from callbot.server.app import ReferenceServer
    from callbot.server.settings import ServerSettings

    server = ReferenceServer(ServerSettings(host="127.0.0.1", port=0))
    await server.start()
    try:
        print(f"reference server on {server.url}", file=progress, flush=True)
        async with (
            control_plane(
                LocalProcessLauncher(env={"CALLBOT_LOG_LEVEL": log_level})
            ) as (base_url, key),
            httpx.AsyncClient(
                base_url=base_url,
                timeout=10.0,
                headers={"Authorization": f"Bearer {key}"},
            ) as client,
        ):
            print(f"control plane on {base_url}", file=progress, flush=True)
            return await _drive(client, server.url, duration, progress)
    finally:
        await server.stop()


async def _drive(
    client: httpx.AsyncClient, server_url: str, duration: float, progress: TextIO
) -> dict[str, Any]:
    ids = []
    names = {}
    for user_id, name, extra in BOTS:
        response = await client.post(
            "/bots",
            json={
                "server_url": server_url,
                "room_id": ROOM_ID,
                "user_id": user_id,
                "display_name": name,
                **extra,
            },
        )
        response.raise_for_status()
        ids.append(response.json()["id"])
        names[ids[-1]] = user_id
        print(
            f"created {user_id} as {ids[-1]} in room {ROOM_ID}",
            file=progress,
            flush=True,
        )

    loop = asyncio.get_running_loop()
    start = loop.time()
    started = time.time()
    tiers: TierChanges = {}
    after: dict[str, int] = {}

    async def look() -> list[dict[str, Any]]:
        bots = await _snapshot(client, ids)
        print(format_progress(loop.time() - start, bots), file=progress, flush=True)
        for line in await _follow_tiers(client, ids, tiers, after, started):
            bot_id = line.split(":", 1)[0].strip()
            print(line.replace(bot_id, names[bot_id], 1), file=progress, flush=True)
        return bots

    for second in range(1, math.ceil(duration) + 1):
        await asyncio.sleep(max(0.0, start + min(second, duration) - loop.time()))
        bots = await look()
        if all(bot["status"] in ("left", "failed") for bot in bots):
            break

    print("removing the bots", file=progress, flush=True)
    for bot_id in ids:
        response = await client.delete(f"/bots/{bot_id}")
        response.raise_for_status()

    deadline = loop.time() + LEAVE_WAIT
    bots = await _snapshot(client, ids)
    while loop.time() < deadline and not all(
        bot["status"] in ("left", "failed") for bot in bots
    ):
        await asyncio.sleep(0.2)
        bots = await _snapshot(client, ids)
    bots = await look()
    return summarize(ROOM_ID, bots, tiers)
