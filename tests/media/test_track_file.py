import dataclasses
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from callbot.rtc.tap import EncodedFrame
from media.sinks.track_file import TrackFile
from tests.media.encoded_media import opus_frames, vp8_frames

ROOT = Path(__file__).resolve().parents[2]


def _shifted(frame: EncodedFrame, base: int) -> EncodedFrame:
    return dataclasses.replace(frame, timestamp=(frame.timestamp + base) & 0xFFFFFFFF)


def _decoded_video(path: Path) -> list[tuple[float, int, int]]:
    with av.open(str(path)) as container:
        return [
            (float(f.time or 0.0), f.width, f.height) for f in container.decode(video=0)
        ]


def test_vp8_and_opus_written_without_transcoding(tmp_path: Path) -> None:
    video = TrackFile(tmp_path / "v.webm", "video")
    for i, frame in enumerate(vp8_frames(60)):
        video.write(frame, i / 30)
    audio = TrackFile(tmp_path / "a.ogg", "audio", container="ogg")
    for i, frame in enumerate(opus_frames(2.0)):
        audio.write(frame, i / 50)

    assert video.close().duration == pytest.approx(2.0, abs=0.04)
    assert audio.close().duration == pytest.approx(2.0, abs=0.04)
    with av.open(str(tmp_path / "v.webm")) as container:
        assert container.streams.video[0].codec_context.name == "vp8"
        assert container.duration / 1e6 == pytest.approx(2.0, abs=0.05)
        assert sum(1 for _ in container.decode(video=0)) == 60
    with av.open(str(tmp_path / "a.ogg")) as container:
        assert container.streams.audio[0].codec_context.name == "opus"
        samples = sum(f.samples for f in container.decode(audio=0))
        assert samples / 48000 == pytest.approx(2.0, abs=0.05)


def test_video_starts_at_the_first_keyframe(tmp_path: Path) -> None:
    frames = list(vp8_frames(40, keyframe_interval=30))
    video = TrackFile(tmp_path / "v.webm", "video")
    for i, frame in enumerate(frames[1:]):  # the first keyframe is missed
        video.write(frame, i / 30)
    info = video.close()
    assert info.dropped_before_keyframe == 29
    assert info.frames == 10
    assert len(_decoded_video(tmp_path / "v.webm")) == 10


def test_rtp_wrap_during_recording_keeps_wall_duration(tmp_path: Path) -> None:
    # Bug report: timestamps wrapping past 2^32 made files ~13 h long.
    base = (1 << 32) - 2 * 90000  # wraps 2 s in
    video = TrackFile(tmp_path / "v.webm", "video")
    for i, frame in enumerate(vp8_frames(180)):
        video.write(_shifted(frame, base), i / 30)
    audio = TrackFile(tmp_path / "a.webm", "audio")
    for i, frame in enumerate(opus_frames(6.0)):
        audio.write(_shifted(frame, (1 << 32) - 48000), i / 50)
    video.close()
    audio.close()

    assert video.timeline.stats.wraps == 1
    assert audio.timeline.stats.wraps == 1
    for name in ("v.webm", "a.webm"):
        with av.open(str(tmp_path / name)) as container:
            assert container.duration / 1e6 == pytest.approx(6.0, abs=1.0)


def test_duplicate_and_reordered_timestamps_keep_recording(tmp_path: Path) -> None:
    frames = list(vp8_frames(90))
    frames[40] = dataclasses.replace(frames[40], timestamp=frames[39].timestamp)
    frames[60], frames[61] = (
        dataclasses.replace(frames[60], timestamp=frames[61].timestamp),
        dataclasses.replace(frames[61], timestamp=frames[60].timestamp),
    )
    video = TrackFile(tmp_path / "v.webm", "video")
    for i, frame in enumerate(frames):
        assert video.write(frame, i / 30)
    info = video.close()

    assert info.frames == 90
    assert video.timeline.stats.non_increasing == 2
    with av.open(str(tmp_path / "v.webm")) as container:
        stream = container.streams.video[0]
        pts = [p.pts for p in container.demux(stream) if p.pts is not None]
    assert len(pts) == 90
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert len(_decoded_video(tmp_path / "v.webm")) == 90


def test_resolution_change_plays_through(tmp_path: Path) -> None:
    large = list(vp8_frames(60, 640, 480))
    small = [_shifted(f, 60 * 3000) for f in vp8_frames(60, 320, 240, first_index=0)]
    video = TrackFile(tmp_path / "v.webm", "video")
    for i, frame in enumerate(large + small):
        video.write(frame, i / 30)
    info = video.close()

    assert [(s.width, s.height) for s in info.sizes] == [(640, 480), (320, 240)]
    assert info.sizes[1].position == 2000
    decoded = _decoded_video(tmp_path / "v.webm")
    assert len(decoded) == 120
    assert {(w, h) for _, w, h in decoded[:60]} == {(640, 480)}
    assert {(w, h) for _, w, h in decoded[60:]} == {(320, 240)}
    assert decoded[-1][0] == pytest.approx(119 / 30, abs=0.02)


def test_closed_file_has_duration_and_seeks(tmp_path: Path) -> None:
    video = TrackFile(tmp_path / "v.webm", "video")
    for i, frame in enumerate(vp8_frames(150)):
        video.write(frame, i / 30)
    video.close()
    with av.open(str(tmp_path / "v.webm")) as container:
        assert container.duration / 1e6 == pytest.approx(5.0, abs=0.05)
        stream = container.streams.video[0]
        container.seek(int(3.5 / stream.time_base), stream=stream)
        frame = next(container.decode(stream))
        assert 2.9 <= float(frame.time or 0) <= 3.6


_WRITER = """
import sys, time
from pathlib import Path
from media.sinks.track_file import TrackFile
from tests.media.encoded_media import opus_frames, vp8_frames

out = Path(sys.argv[1])
video = list(vp8_frames(600))
audio = list(opus_frames(20.0))
v = TrackFile(out / "v.webm", "video")
a = TrackFile(out / "a.ogg", "audio", container="ogg")
start = time.monotonic()
sent = 0
for i, frame in enumerate(video):
    now = i / 30
    while time.monotonic() - start < now:
        time.sleep(0.003)
    v.write(frame, now)
    while sent < len(audio) and sent / 50 <= now:
        a.write(audio[sent], sent / 50)
        sent += 1
    print(now, flush=True)
"""


def _ffprobe_duration(path: Path) -> float:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return max(float(p["pts_time"]) for p in json.loads(out.stdout)["packets"])


@pytest.mark.integration
def test_files_survive_sigkill_of_the_writer(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert process.stdout is not None
    written = 0.0
    deadline = time.monotonic() + 60
    for line in process.stdout:
        written = float(line)
        if written >= 5.0 or time.monotonic() > deadline:
            break
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stdout.close()
    assert written >= 5.0

    for name, kind in (("v.webm", "video"), ("a.ogg", "audio")):
        path = tmp_path / name
        with av.open(str(path)) as container:
            stream = container.streams.get(**{kind: 0})[0]
            frames = list(container.decode(stream))
        last = float(frames[-1].time or 0)
        assert written - 2.0 <= last <= written + 0.1, (name, last, written)
        assert _ffprobe_duration(path) >= written - 2.0
