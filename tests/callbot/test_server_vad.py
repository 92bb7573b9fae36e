"""The server's voice activity detector on hand-made audio-level sequences,
and its ``vadNotification`` in a call (media events §3, §8)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest

from callbot.server.app import ReferenceServer
from callbot.server.settings import ServerSettings
from callbot.server.vad import (
    MEMBRANE_PARAMS,
    VoiceActivityDetector,
    activity_score,
    estimate_speech,
)
from tests.callbot.raw_phoenix import Frame, RawClient
from tests.worker_bots import WorkerBot, stop_bots

LOUD = -20
QUIET = -60
# Opus at 20 ms per packet on a 48 kHz clock.
STEP = 960


def feed(
    detector: VoiceActivityDetector,
    levels: list[int | None],
    *,
    first: int = 0,
    start: int = 1000,
) -> list[tuple[int, str]]:
    """Feed one packet per level; ``(packet index, new status)`` of each change."""
    changes = []
    for offset, level in enumerate(levels):
        index = first + offset
        status = detector.update(start + index * STEP, level)
        if status is not None:
            changes.append((index, status))
    return changes


def test_the_real_parameters_need_2_of_10_and_one_group_with_3() -> None:
    medium, long = MEMBRANE_PARAMS.medium, MEMBRANE_PARAMS.long
    assert MEMBRANE_PARAMS.levels_needed == 70
    assert activity_score(1, medium) == pytest.approx(
        math.log(10) + 10 * math.log(0.5) - math.log(24) + 24
    )
    assert activity_score(1, medium) < 20 < activity_score(2, medium)
    assert activity_score(0, long) == 1.0e-8
    assert activity_score(1, long) > 20
    # The immediate tier never vetoes: even an inactive packet scores the floor.
    assert activity_score(0, MEMBRANE_PARAMS.immediate) > 0


def test_speech_starts_on_the_70th_loud_packet() -> None:
    detector = VoiceActivityDetector()
    changes = feed(detector, [LOUD] * 100)
    assert changes == [(69, "speech")]
    assert detector.status == "speech"
    assert detector.changed_at == 1000 + 69 * STEP


def test_silence_follows_9_quiet_packets_after_speech() -> None:
    detector = VoiceActivityDetector()
    feed(detector, [LOUD] * 80)
    # With 8 quiet packets, 2 of the newest 10 are still loud.
    assert feed(detector, [QUIET] * 8, first=80) == []
    assert feed(detector, [QUIET] * 100, first=88) == [(88, "silence")]


def test_speech_resumes_at_once_while_a_dense_group_is_in_the_window() -> None:
    detector = VoiceActivityDetector()
    feed(detector, [LOUD] * 80)
    feed(detector, [QUIET] * 20, first=80)
    assert detector.status == "silence"
    assert feed(detector, [LOUD, LOUD], first=100) == [(101, "speech")]


def test_a_level_at_the_threshold_is_speech_one_below_is_not() -> None:
    at = VoiceActivityDetector()
    assert feed(at, [-32] * 70) == [(69, "speech")]

    below = VoiceActivityDetector()
    assert feed(below, [-33] * 500) == []
    assert below.status == "silence"


def test_a_custom_threshold_moves_the_boundary() -> None:
    detector = VoiceActivityDetector(threshold_dbov=-50)
    assert feed(detector, [-50] * 70) == [(69, "speech")]


def test_no_audio_level_extension_is_never_speech() -> None:
    detector = VoiceActivityDetector()
    assert feed(detector, [None] * 500) == []
    assert detector.status == "silence"
    assert detector.packets == 0


def test_packets_without_a_level_do_not_count_towards_the_70() -> None:
    detector = VoiceActivityDetector()
    levels: list[int | None] = [LOUD] * 69 + [None] * 30 + [LOUD]
    assert feed(detector, levels) == [(99, "speech")]
    assert detector.packets == 70


def test_sparse_activity_without_a_dense_group_stays_silence() -> None:
    # Every group of 10 has exactly 2 loud packets: the newest 10 pass, but no
    # group reaches the 3 the long tier needs.
    group = [LOUD, LOUD] + [QUIET] * 8
    detector = VoiceActivityDetector()
    assert feed(detector, group * 20) == []

    # One group with 3 loud packets anywhere in the newest 70 is enough.
    newest = [LOUD, LOUD] + [QUIET] * 58
    assert not estimate_speech(newest + [LOUD] * 2 + [QUIET] * 8)
    assert estimate_speech(newest + [LOUD] * 3 + [QUIET] * 7)


def test_fewer_than_70_levels_are_silence_and_older_ones_are_not_read() -> None:
    assert not estimate_speech([LOUD] * 69)
    assert estimate_speech([LOUD] * 70 + [QUIET] * 100)
    assert not estimate_speech([QUIET] * 70 + [LOUD] * 100)


def test_a_packet_with_rtp_timestamp_0_is_skipped_like_the_real_endpoint() -> None:
    detector = VoiceActivityDetector()
    assert feed(detector, [LOUD] * 69) == []
    assert detector.update(0, LOUD) is None
    assert detector.packets == 69
    assert detector.update(5, LOUD) == "speech"


SPEECH_WAV = Path(__file__).parent.parent / "data" / "speech-en-us-16k.wav"
ROOM = "lobby"
TOPIC = f"call:{ROOM}"


def vad_data(data: str) -> dict[str, Any] | None:
    """The data of a ``vadNotification`` media event, else ``None``."""
    document = json.loads(data)
    inner = document.get("data")
    if document.get("type") != "custom" or not isinstance(inner, dict):
        return None
    if inner.get("type") != "vadNotification":
        return None
    result: dict[str, Any] = inner["data"]
    return result


def is_vad_frame(frame: Frame) -> bool:
    return frame[3] == "media_event" and vad_data(frame[4]["data"]) is not None


@pytest.mark.integration
async def test_a_receiver_hears_speech_then_silence_and_the_publisher_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with ReferenceServer(ServerSettings(port=0)) as server:
        # carol, a raw client, connects and never answers an offer: alice's
        # tracks stay in her endpoint's outbound set.
        carol = await RawClient.open(server.url)
        try:
            join_ref, reply = await carol.join(TOPIC, {"user_id": "carol"})
            assert reply[4]["status"] == "ok"
            joined = await carol.request(join_ref, TOPIC, "join_call", {})
            carol_endpoint = joined["response"]["endpoint_id"]
            connect = {"type": "connect", "data": {"metadata": {"name": "carol"}}}
            await carol.push(
                join_ref, TOPIC, "media_event", {"data": json.dumps(connect)}
            )

            # Which endpoints the server sends vadNotification to.
            call = server.call(ROOM)
            assert call is not None
            notified: list[str] = []
            deliver = call.on_media_event

            def spy(endpoint_id: str, data: str) -> None:
                if vad_data(data) is not None:
                    notified.append(endpoint_id)
                deliver(endpoint_id, data)

            monkeypatch.setattr(call, "on_media_event", spy)

            alice = WorkerBot(
                server.url,
                ROOM,
                "alice",
                audio_file=str(SPEECH_WAV),
                audio_file_loop=False,
            )
            await alice.start()
            try:
                statuses: list[str] = []
                track_ids: set[str] = set()
                # 3.8 s of speech, then digital silence: the last change comes
                # well within 2.5 s of quiet.
                while True:
                    quiet = statuses[-1:] == ["silence"]
                    try:
                        frame = await carol.take(
                            is_vad_frame, timeout=2.5 if quiet else 20.0
                        )
                    except TimeoutError:
                        assert quiet, f"notifications so far: {statuses}"
                        break
                    data = vad_data(frame[4]["data"])
                    assert data is not None
                    statuses.append(data["status"])
                    track_ids.add(data["trackId"])

                published = server.published_tracks(ROOM, "alice")
                (audio_track,) = [t for t, k in published.items() if k == "audio"]
                assert track_ids == {audio_track}
                # Changes only: speech first, alternating, silence at the end.
                assert statuses[0] == "speech"
                assert statuses[-1] == "silence"
                assert all(a != b for a, b in itertools.pairwise(statuses))
                assert notified == [carol_endpoint] * len(statuses)
                assert alice.status == "in_call"
            finally:
                await stop_bots([alice])
        finally:
            await carol.close()
