"""``callbot transcode MANIFEST OUT.mp4`` on a recording made in the test."""

from __future__ import annotations

import fractions
import json
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np

from callbot.cli import main
from callbot.rtc.tap import EncodedFrame, make_frame
from media.compositor import grid_cells
from media.sinks.composite_output import PLAYLIST_NAME
from media.sinks.manifest import Manifest, TrackEntry
from media.sinks.track_file import TrackFile
from tests.media.composite_checks import (
    cell_colour,
    close_to,
    frame_at,
    is_fast_start,
    playlist_segments,
    streams,
)
from tests.media.encoded_media import opus_frames

RED, BLUE, GREEN = (0, 0, 220), (220, 0, 0), (0, 200, 0)
STARTED = 1_764_840_000.0
CALL = 6.0


def solid_vp8(bgr: tuple[int, int, int], count: int) -> Iterator[EncodedFrame]:
    """``count`` VP8 frames of one colour at 30 fps (320x240)."""
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height = 320, 240
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = fractions.Fraction(1, 30)
    encoder.gop_size = 30
    encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    image = np.full((240, 320, 3), bgr, np.uint8)
    for i in range(count):
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = i
        for packet in encoder.encode(frame):
            yield make_frame("video", "VP8", bytes(packet), i * 3000)


def record(
    directory: Path,
    manifest: Manifest,
    user_id: str,
    kind: str,
    frames: Iterator[EncodedFrame],
    start: float,
    rate: float,
) -> None:
    name = f"{user_id}-{kind}.webm"
    file = TrackFile(directory / name, kind)
    for i, frame in enumerate(frames):
        file.write(frame, STARTED + start + i / rate)
    info = file.close()
    entry = TrackEntry(f"{user_id}-{kind}", kind, user_id, None, name, info.codec)
    entry.start, entry.duration, entry.closed = start, info.duration, True
    entry.end = start + info.duration
    manifest.tracks.append(entry)


def make_recording(directory: Path) -> Path:
    """alice: red video and a tone from 0.5 s to the end; bob: blue video for
    the first 3 s and a green snapshot at 3.5 s; carol: no tracks, joins at
    1 s and speaks from 2 to 4 s."""
    directory.mkdir()
    manifest = Manifest("lobby", "rec", STARTED)
    for user_id, joined in (("alice", 0.0), ("bob", 0.0), ("carol", 1.0)):
        entry = manifest.participant(user_id)
        entry.display_name, entry.joined = user_id.title(), joined
    record(directory, manifest, "alice", "video", solid_vp8(RED, 165), 0.5, 30)
    record(directory, manifest, "alice", "audio", opus_frames(5.5), 0.5, 50)
    record(directory, manifest, "bob", "video", solid_vp8(BLUE, 90), 0.0, 30)
    (directory / "snapshots").mkdir()
    ok, jpeg = cv2.imencode(".jpg", np.full((180, 320, 3), GREEN, np.uint8))
    assert ok
    (directory / "snapshots" / "bob-3500.jpg").write_bytes(jpeg.tobytes())
    manifest.snapshots.append(
        {"user_id": "bob", "file": "snapshots/bob-3500.jpg", "at": 3.5}
    )
    manifest.speaking.append({"user_id": "carol", "start": 2.0, "end": 4.0})
    manifest.ended_at = STARTED + CALL
    return manifest.write(directory)


def test_transcode_command_composites_a_recording(tmp_path: Path) -> None:
    manifest = make_recording(tmp_path / "recording")
    out = tmp_path / "call.mp4"
    hls = tmp_path / "hls"

    code = main(
        [
            "transcode",
            str(manifest),
            str(out),
            "--width",
            "640",
            "--height",
            "360",
            "--fps",
            "10",
            "--hls",
            str(hls),
        ]
    )
    assert code == 0

    names, duration = streams(out)
    assert sorted(names) == ["aac", "h264"]
    assert abs(duration - CALL) < 0.2
    assert is_fast_start(out)

    cells = grid_cells(3, 640, 360)
    middle = frame_at(out, 2.5)
    assert close_to(cell_colour(middle, cells[0]), RED)
    assert close_to(cell_colour(middle, cells[1]), BLUE)
    b, g, r = middle[cells[2].y + 2, cells[2].x + cells[2].width // 2]
    assert g > 150 and r < 150  # carol's card, speaking
    late = frame_at(out, 5.0)
    b, g, r = cell_colour(late, cells[1])
    assert g > r + 40 and g > b + 40, (b, g, r)  # bob from his snapshot
    early = frame_at(out, 0.2)
    assert close_to(cell_colour(early, cells[1]), BLUE)
    assert len(grid_cells(2, 640, 360)) == 2  # carol not there yet: two cells
    assert close_to(cell_colour(early, grid_cells(2, 640, 360)[1]), BLUE)

    with av.open(str(out)) as container:
        samples = np.concatenate(
            [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
        ).astype(np.float64)
    per_second = 48000 * 2
    before = samples[: int(0.4 * per_second)]
    during = samples[2 * per_second : 4 * per_second]
    assert np.sqrt(np.mean(np.square(before))) < 0.01  # alice's tone starts at 0.5 s
    assert np.sqrt(np.mean(np.square(during))) > 0.1

    segments = playlist_segments(hls / PLAYLIST_NAME)
    assert len(segments) == 3
    for segment in segments:
        assert sorted(streams(segment)[0]) == ["aac", "h264"]


def test_manifest_of_a_recording_cut_short_still_transcodes(tmp_path: Path) -> None:
    manifest_path = make_recording(tmp_path / "recording")
    manifest = json.loads(manifest_path.read_text())
    manifest["ended_at"] = None  # the recorder was killed
    manifest_path.write_text(json.dumps(manifest))
    out = tmp_path / "call.mp4"
    args = ["--width", "320", "--height", "180", "--fps", "10"]
    assert main(["transcode", str(manifest_path), str(out), *args]) == 0
    _, duration = streams(out)
    assert abs(duration - CALL) < 0.3  # to the end of the longest track
