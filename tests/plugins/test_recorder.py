import json
import logging
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from callbot.bot.plugin import PluginContext, RemoteTrack, RemoteTrackInfo
from plugins.recorder import Recorder, RecorderConfig
from tests.media.encoded_media import opus_frames, vp8_frames


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def _recorder(tmp_path: Path, clock: Clock, **config: object) -> Recorder:
    context = PluginContext(
        "b-1", "lobby", "rec", logging.getLogger("test"), lambda r: None, clock
    )
    return Recorder(RecorderConfig(directory=str(tmp_path), **config), context)


def test_recording_with_manifest(tmp_path: Path) -> None:
    clock = Clock(1_000_000.0)
    recorder = _recorder(tmp_path, clock)
    recorder.on_participant_joined("bot-2", "bot-2_1", "Two")

    keyframe_requests: list[str] = []
    video = RemoteTrack(
        RemoteTrackInfo("vid-1", "video", "bot-2_1", "bot-2", "1"),
        request_keyframe=lambda: keyframe_requests.append("vid-1"),
    )
    audio = RemoteTrack(RemoteTrackInfo("aud-1", "audio", "bot-2_1", "bot-2", "0"))
    clock.now += 0.5
    recorder.on_track_added(video)
    recorder.on_track_added(audio)
    assert keyframe_requests == ["vid-1"]

    vp8 = list(vp8_frames(90))
    opus = list(opus_frames(3.0))
    start = clock.now
    for i in range(150):
        clock.now = start + i / 50
        audio.deliver_encoded(opus[i])
        if i % 5 in (0, 2, 4) and i * 3 // 5 < 90:
            video.deliver_encoded(vp8[i * 3 // 5])
        if i == 25:
            recorder.on_tier_changed("bot-2", "viewer")
            recorder.on_speaking("bot-2", True)
        if i == 75:
            recorder.on_speaking("bot-2", False)
        if i == 100:
            _, jpeg = cv2.imencode(".jpg", np.full((240, 320, 3), 90, np.uint8))
            recorder.on_snapshot("bot-2", jpeg.tobytes(), 320, 240, clock.now - 0.1)

    # the publisher stops its video: that file is final at once
    recorder.on_track_ended(video.info)
    with av.open(str(recorder.directory / "bot-2-video-vid-1.webm")) as container:
        assert container.duration / 1e6 == pytest.approx(3.0, abs=0.1)
    clock.now += 1.0
    recorder.on_speaking("bot-2", True)
    recorder.on_leaving()

    manifest = json.loads((recorder.directory / "manifest.json").read_text())
    assert manifest["room_id"] == "lobby"
    assert manifest["started_at"] == 1_000_000.0
    assert manifest["participants"][0]["user_id"] == "bot-2"
    assert manifest["participants"][0]["display_name"] == "Two"
    tracks = {t["track_id"]: t for t in manifest["tracks"]}
    assert tracks["vid-1"]["start"] == pytest.approx(0.5)
    assert tracks["aud-1"]["start"] == pytest.approx(0.5)
    assert tracks["vid-1"]["codec"] == "vp8"
    assert tracks["vid-1"]["frames"] == 90
    assert tracks["vid-1"]["sizes"] == [{"position_ms": 0, "width": 320, "height": 240}]
    assert tracks["aud-1"]["duration"] == pytest.approx(3.0, abs=0.05)
    assert all(t["closed"] for t in tracks.values())
    assert manifest["tiers"] == [{"user_id": "bot-2", "tier": "viewer", "at": 1.0}]
    assert manifest["speaking"] == [
        {"user_id": "bot-2", "start": 1.0, "end": 2.0},
        {"user_id": "bot-2", "start": 4.48, "end": 4.48},
    ]
    snapshot = manifest["snapshots"][0]
    assert snapshot["at"] == pytest.approx(2.5)
    image = cv2.imread(str(recorder.directory / snapshot["file"]))
    assert image.shape == (240, 320, 3)

    with av.open(str(recorder.directory / "bot-2-audio-aud-1.webm")) as container:
        assert container.streams.audio[0].codec_context.name == "opus"
        assert container.duration / 1e6 == pytest.approx(3.0, abs=0.1)


def test_participant_left_closes_only_their_files(tmp_path: Path) -> None:
    clock = Clock(10.0)
    recorder = _recorder(tmp_path, clock, audio_container="ogg")
    tracks = [
        RemoteTrack(RemoteTrackInfo(f"aud-{u}", "audio", f"{u}_1", u)) for u in "ab"
    ]
    for track in tracks:
        recorder.on_track_added(track)
    for i, packet in enumerate(opus_frames(1.0)):
        clock.now = 10.0 + i / 50
        for track in tracks:
            track.deliver_encoded(packet)
    recorder.on_participant_left("a", crashed=False)
    recorder.on_track_ended(tracks[0].info)

    files = {
        t.track_id: f for t, f in ((t, recorder._files[t.track_id][0]) for t in tracks)
    }
    assert files["aud-a"].closed and not files["aud-b"].closed
    with av.open(str(files["aud-a"].path)) as container:
        assert container.format.name == "ogg"
        assert container.duration / 1e6 == pytest.approx(1.0, abs=0.05)
    recorder.on_leaving()
    assert files["aud-b"].closed


def test_track_added_again_after_a_rejoin_goes_to_a_new_part(tmp_path: Path) -> None:
    clock = Clock(0.0)
    recorder = _recorder(tmp_path, clock)
    packets = list(opus_frames(1.0))
    info = RemoteTrackInfo("aud-1", "audio", "a_1", "a")
    for part in range(2):
        track = RemoteTrack(info)
        recorder.on_track_added(track)
        recorder.on_track_added(track)  # told twice: still one file
        for i, packet in enumerate(packets):
            clock.now = part * 10 + i / 50
            track.deliver_encoded(packet)
        recorder.on_track_ended(info)
    recorder.on_leaving()

    names = [t.file for t in recorder.manifest.tracks]
    assert names == ["a-audio-aud-1.webm", "a-audio-aud-1-2.webm"]
    for name in names:
        with av.open(str(recorder.directory / name)) as container:
            assert container.duration / 1e6 == pytest.approx(1.0, abs=0.05)
