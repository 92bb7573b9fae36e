from callbot.rtc.sdp import (
    candidate_foundations,
    decimal_foundation,
    media_mids,
    rewrite_candidate,
    rewrite_sdp_foundations,
)

HEX = "5f3a9c0e1b2d4e6f8a7b9c0d1e2f3a4b"
OFFER = (
    "v=0\r\n"
    "o=- 1 1 IN IP4 0.0.0.0\r\n"
    "s=-\r\n"
    "t=0 0\r\n"
    "a=group:BUNDLE 0 1\r\n"
    "m=audio 50100 UDP/TLS/RTP/SAVPF 96\r\n"
    "a=mid:0\r\n"
    f"a=candidate:{HEX} 1 udp 2130706431 127.0.0.1 50100 typ host\r\n"
    "a=end-of-candidates\r\n"
    "m=video 50100 UDP/TLS/RTP/SAVPF 97\r\n"
    "a=mid:1\r\n"
    f"a=candidate:{HEX} 1 udp 2130706431 127.0.0.1 50100 typ host\r\n"
    "a=candidate:ab12 1 udp 1694498815 127.0.0.1 50200 typ srflx"
    " raddr 127.0.0.1 rport 50100\r\n"
)


def test_offer_line_gets_the_same_numeric_foundation_on_every_run() -> None:
    line = f"a=candidate:{HEX} 1 udp 2130706431 127.0.0.1 50100 typ host"

    rewritten = rewrite_sdp_foundations(line + "\r\n")

    assert rewritten == (
        "a=candidate:257109149 1 udp 2130706431 127.0.0.1 50100 typ host\r\n"
    )


def test_every_offer_foundation_becomes_short_decimal_rest_unchanged() -> None:
    rewritten = rewrite_sdp_foundations(OFFER)

    foundations = candidate_foundations(rewritten)
    assert foundations == ["257109149", "257109149", decimal_foundation("ab12")]
    assert all(f.isdigit() and len(f) <= 10 for f in foundations)
    assert foundations[2] != foundations[0]
    assert rewritten.count("\r\n") == OFFER.count("\r\n")
    assert "typ srflx raddr 127.0.0.1 rport 50100\r\n" in rewritten
    assert "a=end-of-candidates\r\n" in rewritten
    assert HEX not in rewritten


def test_trickled_candidate_foundation_is_rewritten_with_and_without_prefix() -> None:
    body = f"{HEX} 1 udp 2130706431 127.0.0.1 50100 typ host"

    assert rewrite_candidate("candidate:" + body) == (
        "candidate:257109149 1 udp 2130706431 127.0.0.1 50100 typ host"
    )
    assert rewrite_candidate(body).startswith("257109149 1 udp")


def test_decimal_foundations_stay_and_end_of_candidates_passes() -> None:
    line = "candidate:1467250027 1 udp 2122260223 127.0.0.1 55102 typ host"

    assert rewrite_candidate(line) == line
    assert rewrite_candidate("") == ""


def test_media_mids_in_m_line_order() -> None:
    assert media_mids(OFFER) == ["0", "1"]
