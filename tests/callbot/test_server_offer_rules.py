"""What the server accepts in an offer and how it answers (media events §6, §7)."""

from __future__ import annotations

import pytest

from callbot.server.endpoint_events import EndpointCrash
from callbot.server.offer_rules import (
    check_offer,
    foundation,
    is_integer_foundation,
    keep_codecs,
    offer_candidates,
    parse,
    trickle_answer,
)

TWCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
FINGERPRINT = (
    "sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:"
    "C2:43:F0:A1:58:D0:A1:2C:19:08"
)
SESSION = [
    "v=0",
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0 1",
    "a=msid-semantic: WMS",
]
AUDIO = [
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 0 9",
    "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:Vx7q",
    "a=ice-pwd:3k9v2uXk4l7t1b8Q0rZ5yWcP",
    "a=ice-options:trickle",
    f"a=fingerprint:{FINGERPRINT}",
    "a=setup:actpass",
    "a=mid:0",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    f"a=extmap:3 {TWCC}",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=sendonly",
    "a=rtcp-mux",
    "a=rtpmap:111 opus/48000/2",
    "a=rtcp-fb:111 transport-cc",
    "a=rtcp-fb:111 nack",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:9 G722/8000",
    "a=candidate:1467250027 1 udp 2122260223 127.0.0.1 55102 typ host",
    "a=end-of-candidates",
]
VIDEO = [
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 45",
    "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:Vx7q",
    "a=ice-pwd:3k9v2uXk4l7t1b8Q0rZ5yWcP",
    "a=ice-options:trickle",
    f"a=fingerprint:{FINGERPRINT}",
    "a=setup:actpass",
    "a=mid:1",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:5/sendonly urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "a=extmap:6 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    "a=extmap:7 urn:3gpp:video-orientation",
    f"a=extmap:3 {TWCC}",
    "a=sendonly",
    "a=rtcp-mux",
    "a=rtcp-rsize",
    "a=rtpmap:96 VP8/90000",
    "a=rtcp-fb:96 goog-remb",
    "a=rtcp-fb:96 transport-cc",
    "a=rtcp-fb:96 ccm fir",
    "a=rtcp-fb:96 nack",
    "a=rtcp-fb:96 nack pli",
    "a=rtcp-fb:96 rrtr",
    "a=rtpmap:97 rtx/90000",
    "a=fmtp:97 apt=96",
    "a=rtpmap:98 H264/90000",
    "a=rtcp-fb:98 goog-remb",
    "a=fmtp:98 level-asymmetry-allowed=1;packetization-mode=1",
    "a=rtpmap:99 rtx/90000",
    "a=fmtp:99 apt=98",
    "a=rtpmap:45 AV1/90000",
]


def sdp(
    session: list[str] | None = None,
    audio: list[str] | None = None,
    video: list[str] | None = None,
) -> str:
    lines = (session or SESSION) + (audio or AUDIO) + (video or VIDEO)
    return "\r\n".join(lines) + "\r\n"


def without(lines: list[str], prefix: str) -> list[str]:
    return [line for line in lines if not line.startswith(prefix)]


def replaced(lines: list[str], prefix: str, new: str) -> list[str]:
    return [new if line.startswith(prefix) else line for line in lines]


# -- check_offer


def test_a_browser_like_offer_passes() -> None:
    offer = check_offer(sdp())
    assert [(m.kind, m.mid, m.direction) for m in offer.media] == [
        ("audio", "0", "sendonly"),
        ("video", "1", "sendonly"),
    ]
    assert all(m.sending for m in offer.media)


def test_session_level_credentials_and_fingerprint_are_enough() -> None:
    moved = ("a=ice-ufrag", "a=ice-pwd", "a=fingerprint", "a=setup")
    session = SESSION + [line for line in AUDIO if line.startswith(moved)]
    audio, video = AUDIO, VIDEO
    for prefix in moved:
        audio, video = without(audio, prefix), without(video, prefix)
    check_offer(sdp(session, audio, video))


def test_rejected_m_line_stays_out_of_bundle() -> None:
    video = replaced(VIDEO, "m=video", "m=video 0 UDP/TLS/RTP/SAVPF 96")
    video = without(video, "a=rtcp-mux")
    session = replaced(SESSION, "a=group:BUNDLE", "a=group:BUNDLE 0")
    offer = check_offer(sdp(session, AUDIO, video))
    assert offer.media[1].rejected and not offer.media[1].sending


@pytest.mark.parametrize(
    ("session", "audio", "video", "why"),
    [
        pytest.param(
            without(SESSION, "a=group"), AUDIO, VIDEO, "BUNDLE", id="no-bundle"
        ),
        pytest.param(
            [*SESSION, "a=group:BUNDLE 0 1"], AUDIO, VIDEO, "BUNDLE", id="two-bundles"
        ),
        pytest.param(
            replaced(SESSION, "a=group", "a=group:BUNDLE 0"),
            AUDIO,
            VIDEO,
            "BUNDLE",
            id="bundle-misses-a-mid",
        ),
        pytest.param(SESSION, without(AUDIO, "a=mid"), VIDEO, "mid", id="no-mid"),
        pytest.param(
            SESSION, [*AUDIO, "a=mid:9"], VIDEO, "mid", id="two-mids-on-one-line"
        ),
        pytest.param(
            SESSION,
            AUDIO,
            replaced(VIDEO, "a=mid", "a=mid:0"),
            "duplicate mid",
            id="duplicate-mid",
        ),
        pytest.param(
            SESSION, AUDIO, without(VIDEO, "a=rtcp-mux"), "rtcp-mux", id="no-rtcp-mux"
        ),
        pytest.param(
            SESSION, without(AUDIO, "a=ice-pwd"), VIDEO, "ICE", id="no-ice-pwd"
        ),
        pytest.param(
            SESSION,
            AUDIO,
            replaced(VIDEO, "a=ice-ufrag", "a=ice-ufrag:other"),
            "ICE credentials differ",
            id="credentials-differ",
        ),
        pytest.param(
            SESSION,
            replaced(AUDIO, "a=fingerprint", "a=fingerprint:sha-1 AA:BB"),
            VIDEO,
            "sha-256",
            id="sha-1-fingerprint",
        ),
        pytest.param(
            SESSION,
            AUDIO,
            replaced(VIDEO, "a=fingerprint", "a=fingerprint:sha-256 AA:BB"),
            "fingerprints differ",
            id="fingerprints-differ",
        ),
        pytest.param(
            SESSION,
            AUDIO,
            without(VIDEO, "a=fingerprint"),
            "fingerprint",
            id="no-fingerprint",
        ),
        pytest.param(SESSION, without(AUDIO, "a=setup"), VIDEO, "setup", id="no-setup"),
        pytest.param(
            SESSION,
            AUDIO,
            replaced(VIDEO, "a=setup", "a=setup:passive"),
            "setup differs",
            id="setup-differs",
        ),
        pytest.param(
            SESSION,
            [*AUDIO, "a=rid:h send", "a=simulcast:send h"],
            VIDEO,
            "simulcast audio",
            id="simulcast-audio",
        ),
    ],
)
def test_offer_violations_crash_the_endpoint(
    session: list[str], audio: list[str], video: list[str], why: str
) -> None:
    with pytest.raises(EndpointCrash) as info:
        check_offer(sdp(session, audio, video))
    assert why in info.value.reason


def test_offer_without_m_lines_crashes() -> None:
    with pytest.raises(EndpointCrash):
        check_offer("\r\n".join(SESSION) + "\r\n")


# -- keep_codecs


def test_keep_codecs_leaves_opus_vp8_rtx_and_their_kept_feedback_and_extensions() -> (
    None
):
    kept = parse(keep_codecs(check_offer(sdp())))
    audio, video = kept.media

    assert audio.lines[0] == "m=audio 9 UDP/TLS/RTP/SAVPF 111"
    assert audio.values("rtpmap") == ["111 opus/48000/2"]
    assert audio.values("fmtp") == ["111 minptime=10;useinbandfec=1"]
    assert audio.values("rtcp-fb") == ["111 transport-cc"]
    assert audio.values("extmap") == [
        "1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        f"3 {TWCC}",
        "4 urn:ietf:params:rtp-hdrext:sdes:mid",
    ]

    assert video.lines[0] == "m=video 9 UDP/TLS/RTP/SAVPF 96 97"
    assert video.values("rtpmap") == ["96 VP8/90000", "97 rtx/90000"]
    assert video.values("fmtp") == ["97 apt=96"]
    assert video.values("rtcp-fb") == [
        "96 transport-cc",
        "96 ccm fir",
        "96 nack",
        "96 nack pli",
    ]
    assert video.values("extmap") == [
        "4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "5/sendonly urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
        "6 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
        f"3 {TWCC}",
    ]


def test_keep_codecs_keeps_everything_else() -> None:
    kept = parse(keep_codecs(check_offer(sdp())))
    assert kept.session == SESSION
    for section, original in zip(kept.media, (AUDIO, VIDEO), strict=True):
        for name in ("mid", "ice-ufrag", "fingerprint", "setup", "candidate"):
            assert section.values(name) == parse("\r\n".join(SESSION + original)).media[
                0
            ].values(name)
        assert section.direction == "sendonly"


def test_keep_codecs_needs_the_payload_type_offered_first() -> None:
    # VP8 at 90 kHz only; an rtx whose apt is H264 goes with H264
    video = replaced(VIDEO, "m=video", "m=video 9 UDP/TLS/RTP/SAVPF 99 98 97 96")
    kept = parse(keep_codecs(check_offer(sdp(video=video))))
    assert kept.media[1].formats == ["97", "96"]


# -- trickle_answer


def test_trickle_answer_drops_candidates_and_says_trickle() -> None:
    answer = trickle_answer(sdp())
    lines = answer.split("\r\n")
    assert answer.endswith("\r\n")
    assert not any(line.startswith("a=candidate:") for line in lines)
    assert "a=end-of-candidates" not in lines
    assert lines.count("a=ice-options:trickle") == 2
    assert lines.count("a=extmap-allow-mixed") == 1
    parsed = parse(answer)
    assert "a=extmap-allow-mixed" in parsed.session
    for section in parsed.media:
        assert section.values("ice-options") == ["trickle"]
        assert section.values("mid")
    assert [m.mid for m in parsed.media] == ["0", "1"]


# -- candidates and foundations


def test_offer_candidates_and_foundations() -> None:
    assert offer_candidates(sdp()) == [
        "candidate:1467250027 1 udp 2122260223 127.0.0.1 55102 typ host",
    ]
    assert foundation("a=candidate:42 1 udp 1 127.0.0.1 5 typ host") == "42"
    assert foundation("candidate:42 1 udp 1 127.0.0.1 5 typ host") == "42"


@pytest.mark.parametrize(
    ("candidate", "integer"),
    [
        ("candidate:1467250027 1 udp 2122260223 127.0.0.1 55102 typ host", True),
        ("candidate:0 1 udp 1 127.0.0.1 5 typ host", True),
        # aiortc's 32-hex foundations: letter first, or digits then letters
        (
            "candidate:5f3a9c0e1b2d4e6f8a7b9c0d1e2f3a4b 1 udp 2130706431 "
            "127.0.0.1 50100 typ host",
            False,
        ),
        (
            "candidate:a8b2c4d6e8f0a2b4c6d8e0f2a4b6c8d0 1 udp 1 127.0.0.1 5 typ host",
            False,
        ),
        ("candidate:12ab 1 udp 1 127.0.0.1 5 typ host", False),
    ],
)
def test_integer_foundations_as_ex_ice_013_reads_them(
    candidate: str, integer: bool
) -> None:
    assert is_integer_foundation(candidate) is integer
