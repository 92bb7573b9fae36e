import logging
from pathlib import Path

import av
import numpy as np
import pytest
from pydantic import ValidationError

from callbot.bot.plugin import PluginContext
from media.sources.file import FileAudioTrack
from media.sources.file_video import FileVideoTrack
from plugins.player import Player, PlayerConfig
from tests.media.test_file_video import _vp8_webm


def _player(**config: object) -> Player:
    context = PluginContext("b", "lobby", "player", logging.getLogger("test"))
    return Player(PlayerConfig.model_validate(config), context)


def _wav(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=48000)
        tone = (np.sin(np.arange(48000) / 10) * 5000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(
            tone.reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = 48000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def test_player_publishes_the_kinds_the_file_holds(tmp_path: Path) -> None:
    _vp8_webm(tmp_path / "clip.webm")
    _wav(tmp_path / "voice.wav")

    video_only = _player(file=str(tmp_path / "clip.webm"))
    track = video_only.source("video")
    assert isinstance(track, FileVideoTrack) and track.passthrough
    assert video_only.source("audio") is None  # the bot's own tone instead
    track.stop()

    audio_only = _player(file=str(tmp_path / "voice.wav"), loop=False)
    assert audio_only.source("video") is None
    audio = audio_only.source("audio")
    assert isinstance(audio, FileAudioTrack)
    assert audio.duration == pytest.approx(1.0, abs=0.01)
    assert not audio.loop


def test_player_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no such file"):
        PlayerConfig.model_validate({"file": str(tmp_path / "nope.webm")})
