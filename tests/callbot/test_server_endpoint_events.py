"""How the server endpoint decodes media events (media events §1, §2, §10)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from callbot.server import endpoint_events as ev
from callbot.server.endpoint_events import EndpointCrash, decode

TRACK = "u-42_5763:0f8e2c1a-7d3b-4e9a-b5c6-2a1d3e4f5a6b"


def media(kind: str, data: Any = None, *, omit_data: bool = False) -> str:
    document: dict[str, Any] = {"type": kind}
    if not omit_data:
        document["data"] = data
    return json.dumps(document)


def custom(kind: str, data: Any = None, *, omit_data: bool = False) -> str:
    inner: dict[str, Any] = {"type": kind}
    if not omit_data:
        inner["data"] = data
    return json.dumps({"type": "custom", "data": inner})


def offer_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "sdpOffer": {"type": "offer", "sdp": "v=0\r\n"},
        "trackIdToTrackMetadata": {TRACK: {}},
        "trackIdToTrackBitrates": {TRACK: 50000},
        "midToTrackId": {"0": TRACK},
    }
    data.update(overrides)
    return data


# -- the events the endpoint acts on


def test_connect_carries_any_metadata_null_included() -> None:
    name = {"displayName": "Bot 42", "name": "Bot 42"}
    assert decode(media("connect", {"metadata": name})) == ev.Connect(name)
    assert decode(media("connect", {"metadata": None})) == ev.Connect(None)


def test_disconnect_without_data_as_the_js_library_sends_it() -> None:
    assert decode('{"type":"disconnect"}') == ev.Disconnect()


def test_metadata_updates() -> None:
    assert decode(
        media("updateEndpointMetadata", {"metadata": {"displayName": "away"}})
    ) == ev.UpdateEndpointMetadata({"displayName": "away"})
    assert decode(
        media("updateTrackMetadata", {"trackId": TRACK, "trackMetadata": {"a": 1}})
    ) == ev.UpdateTrackMetadata(TRACK, {"a": 1})


def test_track_encodings_and_unmute() -> None:
    assert decode(
        media("disableTrackEncoding", {"trackId": TRACK, "encoding": "m"})
    ) == ev.TrackEncoding(TRACK, "m", enabled=False)
    assert decode(
        media("enableTrackEncoding", {"trackId": TRACK, "encoding": "h"})
    ) == ev.TrackEncoding(TRACK, "h", enabled=True)
    assert decode(media("unmuteTrack", {"trackId": TRACK})) == ev.UnmuteTrack(TRACK)


def test_renegotiate_tracks_needs_no_data() -> None:
    assert decode(custom("renegotiateTracks", omit_data=True)) == ev.RenegotiateTracks()


def test_sdp_offer_as_the_js_library_builds_it() -> None:
    event = decode(custom("sdpOffer", offer_data()))
    assert event == ev.SdpOffer(
        sdp="v=0\r\n",
        sdp_type="offer",
        track_id_to_metadata={TRACK: {}},
        mid_to_track_id={"0": TRACK},
        track_id_to_bitrates={TRACK: 50000},
    )


def test_sdp_offer_bitrates_are_optional_and_may_be_simulcast_objects() -> None:
    data = offer_data()
    del data["trackIdToTrackBitrates"]
    event = decode(custom("sdpOffer", data))
    assert isinstance(event, ev.SdpOffer) and event.track_id_to_bitrates == {}

    layers = {"l": 150000, "m": 500000, "h": 2500000}
    event = decode(
        custom("sdpOffer", offer_data(trackIdToTrackBitrates={TRACK: layers}))
    )
    assert isinstance(event, ev.SdpOffer)
    assert event.track_id_to_bitrates == {TRACK: layers}


def test_candidate_with_sensoctos_sdp_mid_patch() -> None:
    line = "candidate:1467250027 1 udp 2122260223 127.0.0.1 55102 typ host"
    event = decode(
        custom("candidate", {"candidate": line, "sdpMLineIndex": 0, "sdpMid": "0"})
    )
    assert event == ev.Candidate(line, "0", 0, None)


def test_candidate_with_null_sdp_mid_is_accepted() -> None:
    data = {
        "candidate": "candidate:1 1 UDP 2122252543 127.0.0.1 50000 typ host",
        "sdpMLineIndex": 0,
        "sdpMid": None,
        "usernameFragment": None,
    }
    event = decode(custom("candidate", data))
    assert isinstance(event, ev.Candidate)
    assert event.sdp_mid is None and event.sdp_mline_index == 0


def test_set_target_track_variant_accepts_null() -> None:
    assert decode(
        custom("setTargetTrackVariant", {"trackId": TRACK, "variant": None})
    ) == ev.SetTargetTrackVariant(TRACK, None)
    assert decode(
        custom("setTargetTrackVariant", {"trackId": TRACK, "variant": "l"})
    ) == ev.SetTargetTrackVariant(TRACK, "l")


# -- ignored: logged as "Invalid media event" or dropped as unexpected


@pytest.mark.parametrize(
    "data",
    [
        pytest.param('{"type": "connect", "data": ', id="json-does-not-parse"),
        pytest.param("", id="empty-string"),
        pytest.param(media("join", {"metadata": {}}), id="unknown-type"),
        pytest.param(custom("sdpAnswer", {"sdp": "v=0"}), id="unknown-custom-type"),
        pytest.param('["connect"]', id="not-an-object"),
        pytest.param('{"data": {}}', id="no-type"),
        pytest.param(media("connect", {}), id="connect-without-metadata"),
        pytest.param(media("connect", omit_data=True), id="connect-without-data"),
        pytest.param(
            media("updateTrackMetadata", {"trackId": TRACK}),
            id="track-metadata-without-metadata",
        ),
        pytest.param(
            custom(
                "sdpOffer", {k: v for k, v in offer_data().items() if k != "sdpOffer"}
            ),
            id="sdpOffer-without-its-sdp-document",
        ),
        pytest.param(
            custom(
                "sdpOffer",
                {k: v for k, v in offer_data().items() if k != "midToTrackId"},
            ),
            id="sdpOffer-without-midToTrackId",
        ),
        pytest.param(media("muteTrack", {"trackId": TRACK}), id="muteTrack"),
        pytest.param(
            custom("trackVariantBitrates", {"trackId": TRACK, "variantBitrates": {}}),
            id="trackVariantBitrates",
        ),
        pytest.param(custom("prioritizeTrack", {"trackId": TRACK}), id="prioritize"),
        pytest.param(
            custom("unprioritizeTrack", {"trackId": TRACK}), id="unprioritize"
        ),
        pytest.param(
            custom(
                "preferedVideoSizes",
                {
                    "bigScreens": 1,
                    "mediumScreens": 0,
                    "smallScreens": 0,
                    "allSameSize": False,
                },
            ),
            id="preferedVideoSizes",
        ),
    ],
)
def test_ignored_media_events(data: str) -> None:
    assert decode(data) is None


def test_invalid_media_event_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="callbot.server.endpoint_events"):
        assert decode(media("nonsense")) is None
    assert "Invalid media event" in caplog.text


# -- crashes the endpoint (§10)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"type": "connect", "data": {"metadata": {}}}, id="object-data"),
        pytest.param(None, id="null-data"),
        pytest.param(42, id="number-data"),
        pytest.param([media("disconnect")], id="list-data"),
    ],
)
def test_media_event_data_that_is_not_a_string_crashes(data: object) -> None:
    with pytest.raises(EndpointCrash):
        decode(data)


@pytest.mark.parametrize(
    "candidate",
    [
        pytest.param(
            {
                "candidate": "candidate:1 1 udp 1 127.0.0.1 5 typ host",
                "sdpMLineIndex": 0,
            },
            id="no-sdpMid",
        ),
        pytest.param(
            {"candidate": "candidate:1 1 udp 1 127.0.0.1 5 typ host", "sdpMid": "0"},
            id="no-sdpMLineIndex",
        ),
        pytest.param("candidate:1 1 udp 1 127.0.0.1 5 typ host", id="data-a-string"),
        pytest.param(None, id="data-null"),
    ],
)
def test_malformed_candidates_crash(candidate: Any) -> None:
    with pytest.raises(EndpointCrash):
        decode(custom("candidate", candidate))


@pytest.mark.parametrize(
    "sdp_offer",
    [
        pytest.param({"type": "offer"}, id="no-sdp"),
        pytest.param({"sdp": "v=0\r\n"}, id="no-type"),
        pytest.param({"type": "bogus", "sdp": "v=0\r\n"}, id="bad-type"),
        pytest.param("v=0\r\n", id="a-string"),
        pytest.param(None, id="null"),
    ],
)
def test_sdp_offer_that_is_not_type_and_sdp_crashes(sdp_offer: Any) -> None:
    with pytest.raises(EndpointCrash):
        decode(custom("sdpOffer", offer_data(sdpOffer=sdp_offer)))


@pytest.mark.parametrize(
    "bitrate",
    [
        pytest.param("50000", id="string"),
        pytest.param(None, id="null"),
        pytest.param([1, 2], id="list"),
        pytest.param(True, id="boolean"),
    ],
)
def test_track_bitrate_that_is_not_number_or_object_crashes(bitrate: Any) -> None:
    with pytest.raises(EndpointCrash):
        decode(custom("sdpOffer", offer_data(trackIdToTrackBitrates={TRACK: bitrate})))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(
            custom("setTargetTrackVariant", {"trackId": TRACK, "variant": "x"}),
            id="variant",
        ),
        pytest.param(
            media("disableTrackEncoding", {"trackId": TRACK, "encoding": "q"}),
            id="disable-encoding",
        ),
        pytest.param(
            media("enableTrackEncoding", {"trackId": TRACK, "encoding": None}),
            id="enable-encoding-null",
        ),
    ],
)
def test_unknown_rid_crashes(data: str) -> None:
    with pytest.raises(EndpointCrash):
        decode(data)


def test_the_crash_says_why() -> None:
    with pytest.raises(EndpointCrash) as info:
        decode(custom("candidate", {"candidate": "", "sdpMLineIndex": 0}))
    assert "sdpMid" in info.value.reason
