import itertools
from pathlib import Path

import av
import numpy as np
import pytest

from media.sinks.track_file import TrackFile
from media.sources.file_video import FileVideoTrack, VideoFileError, probe_video
from tests.media.encoded_media import vp8_frames


def _vp8_webm(path: Path, count: int = 30) -> list[bytes]:
    frames = list(vp8_frames(count))
    writer = TrackFile(path, "video")
    for i, frame in enumerate(frames):
        writer.write(frame, i / 30)
    writer.close()
    return [f.data for f in frames]


def _h264_mp4(path: Path, count: int = 30) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(count):
            image = np.full((240, 320, 3), i * 8, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


class LateClock:
    """Ten seconds pass between any two reads: the track never waits."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 10.0
        return self.now


async def test_vp8_file_is_passed_through_as_packets_and_loops(tmp_path: Path) -> None:
    data = _vp8_webm(tmp_path / "in.webm")
    assert probe_video(tmp_path / "in.webm") == "vp8"
    track = FileVideoTrack(tmp_path / "in.webm", clock=LateClock())
    assert track.passthrough
    items = [await track.recv() for _ in range(62)]
    track.stop()

    assert all(isinstance(item, av.Packet) for item in items)
    assert [bytes(item) for item in items] == data + data + data[:2]
    pts = [item.pts for item in items]
    assert pts[:2] == [0, 2970]  # WebM keeps milliseconds
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert pts[30] - pts[29] == pytest.approx(3000, abs=30)  # the loop goes on
    assert track.loops == 2


async def test_other_codecs_are_decoded_for_the_encoder(tmp_path: Path) -> None:
    _h264_mp4(tmp_path / "in.mp4")
    track = FileVideoTrack(tmp_path / "in.mp4", clock=LateClock())
    assert not track.passthrough
    items = [await track.recv() for _ in range(31)]
    track.stop()
    assert all(isinstance(item, av.VideoFrame) for item in items)
    assert (items[0].width, items[0].height) == (320, 240)
    assert [item.pts for item in items[28:]] == [84000, 87000, 90000]


async def test_without_loop_the_track_ends(tmp_path: Path) -> None:
    from aiortc.mediastreams import MediaStreamError

    _vp8_webm(tmp_path / "in.webm", count=3)
    track = FileVideoTrack(tmp_path / "in.webm", loop=False, clock=LateClock())
    for _ in range(3):
        await track.recv()
    with pytest.raises(MediaStreamError):
        await track.recv()
    track.stop()


def test_pacing_follows_the_file_times(tmp_path: Path) -> None:
    _vp8_webm(tmp_path / "in.webm", count=3)
    track = FileVideoTrack(tmp_path / "in.webm")
    assert track.due(0.0, now=100.0) == 0.0
    assert track.due(0.5, now=100.2) == pytest.approx(0.3)
    assert track.due(1.0, now=101.5) == pytest.approx(0.0)  # a bit late: at once
    # more than a second late: start over from now instead of rushing
    assert track.due(2.0, now=104.0) == 0.0
    assert track.due(2.5, now=104.0) == pytest.approx(0.5)
    track.stop()


def test_a_file_without_video_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audio.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=48000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 960), np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 48000
        container.mux(stream.encode(frame))
    with pytest.raises(VideoFileError, match="no video stream"):
        probe_video(path)
