import itertools
import json
import re

import pytest

from callbot.errors import MediaEventError, NegotiationError
from callbot.rtc import media_events as me
from callbot.rtc import negotiation as neg

SERVER_CANDIDATE = "candidate:3374520011 1 UDP 2130706431 127.0.0.1 50417 typ host"
UUID4 = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)


def server(document: dict[str, object]) -> me.ServerMediaEvent:
    """A server media event as it arrives: double-encoded, then decoded."""
    return me.decode(json.dumps(document))


def custom(kind: str, data: object) -> me.ServerMediaEvent:
    return server({"type": "custom", "data": {"type": kind, "data": data}})


def offer_data(audio: int, video: int) -> me.ServerMediaEvent:
    return custom(
        "offerData",
        {"tracksTypes": {"audio": audio, "video": video}, "integratedTurnServers": []},
    )


def sdp_with_mids(*mids: str) -> str:
    lines = ["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0"]
    lines.append("a=group:BUNDLE " + " ".join(mids))
    for mid in mids:
        lines += [
            "m=audio 9 UDP/TLS/RTP/SAVPF 96",
            f"a=mid:{mid}",
            "a=candidate:5f3a9c0e1b2d4e6f8a7b9c0d1e2f3a4b 1 udp 2130706431"
            " 127.0.0.1 50100 typ host",
        ]
    return "\r\n".join(lines) + "\r\n"


def connected_negotiation(
    others: list[dict[str, object]] | None = None,
) -> tuple[neg.ClientNegotiation, list[neg.Action]]:
    n = neg.ClientNegotiation()
    n.connect({"displayName": "Bot"})
    actions = n.receive(
        server(
            {
                "type": "connected",
                "data": {"id": "bot_1_12", "otherEndpoints": others or []},
            }
        )
    )
    return n, actions


def first_round(n: neg.ClientNegotiation) -> list[neg.Action]:
    """Answer the first offerData (0/0) and apply the answer."""
    [prepare] = n.receive(offer_data(0, 0))
    assert isinstance(prepare, neg.PrepareOffer)
    audio, video = n.local_tracks
    n.offer_created(sdp_with_mids("0", "1"), {audio.track_id: "0", video.track_id: "1"})
    return n.receive(
        custom(
            "sdpAnswer",
            {
                "type": "answer",
                "sdp": "v=0\r\n",
                "midToTrackId": {"0": audio.track_id, "1": video.track_id},
            },
        )
    )


def test_connect_is_sent_once() -> None:
    n = neg.ClientNegotiation()

    [send] = n.connect({"displayName": "Bot"})

    assert isinstance(send, neg.SendEvent)
    assert json.loads(me.encode(send.event)) == {
        "type": "connect",
        "data": {"metadata": {"displayName": "Bot"}},
    }
    with pytest.raises(NegotiationError):
        n.connect({})


def test_alone_the_bot_asks_for_a_round_and_names_its_tracks() -> None:
    n, actions = connected_negotiation()

    assert [type(a) for a in actions] == [neg.SendEvent]
    assert isinstance(actions[0], neg.SendEvent)
    assert isinstance(actions[0].event, me.RenegotiateTracks)
    assert [t.kind for t in n.local_tracks] == ["audio", "video"]
    for track in n.local_tracks:
        endpoint, uuid = track.track_id.split(":")
        assert endpoint == "bot_1_12"
        assert UUID4.fullmatch(uuid)


def test_with_others_publishing_the_bot_waits_for_the_servers_offer_data() -> None:
    others = [
        {
            "id": "alice_101",
            "type": "exwebrtc",
            "metadata": {},
            "trackIdToMetadata": {"alice_101:a": {}},
            "tracks": {"alice_101:a": {"metadata": {}}},
        }
    ]

    _, actions = connected_negotiation(others)

    assert not any(isinstance(a, neg.SendEvent) for a in actions)
    assert [
        a.track.track_id for a in actions if isinstance(a, neg.RemoteTrackAnnounced)
    ] == ["alice_101:a"]


def test_first_offer_publishes_audio_and_video_with_own_mids_only() -> None:
    n, _ = connected_negotiation()

    [prepare] = n.receive(offer_data(0, 0))

    assert isinstance(prepare, neg.PrepareOffer)
    assert prepare.create_peer
    assert [t.kind for t in prepare.add_sendonly] == ["audio", "video"]
    assert prepare.add_recvonly == {"audio": 0, "video": 0}

    audio, video = n.local_tracks
    [send] = n.offer_created(
        sdp_with_mids("0", "1"), {audio.track_id: "0", video.track_id: "1"}
    )
    assert isinstance(send, neg.SendEvent) and isinstance(send.event, me.SdpOffer)
    wire = json.loads(me.encode(send.event))
    data = wire["data"]["data"]
    assert wire["type"] == "custom" and wire["data"]["type"] == "sdpOffer"
    assert data["sdpOffer"]["type"] == "offer"
    assert data["midToTrackId"] == {"0": audio.track_id, "1": video.track_id}
    assert data["trackIdToTrackBitrates"] == {
        audio.track_id: 50000,
        video.track_id: 2500000,
    }
    assert set(data["trackIdToTrackMetadata"]) == {audio.track_id, video.track_id}
    assert "a=candidate:257109149 1 udp" in data["sdpOffer"]["sdp"]
    assert "5f3a9c0e" not in data["sdpOffer"]["sdp"]


def test_a_sending_track_without_mid_is_refused() -> None:
    n, _ = connected_negotiation()
    n.receive(offer_data(0, 0))
    audio, _video = n.local_tracks

    with pytest.raises(NegotiationError):
        n.offer_created(sdp_with_mids("0"), {audio.track_id: "0"})


def test_recvonly_transceivers_are_counted_over_the_whole_endpoint() -> None:
    n, _ = connected_negotiation()
    first_round(n)
    added = []
    for audio, video in [(1, 1), (1, 1), (2, 2), (2, 3), (0, 0)]:
        [prepare] = n.receive(offer_data(audio, video))
        assert isinstance(prepare, neg.PrepareOffer)
        assert not prepare.create_peer and prepare.add_sendonly == ()
        added.append(prepare.add_recvonly)
        n.offer_created(sdp_with_mids("0", "1"), {})
        n.receive(
            custom(
                "sdpAnswer", {"type": "answer", "sdp": "v=0\r\n", "midToTrackId": {}}
            )
        )

    assert added == [
        {"audio": 1, "video": 1},
        {"audio": 0, "video": 0},
        {"audio": 1, "video": 1},
        {"audio": 0, "video": 1},
        {"audio": 0, "video": 0},
    ]
    assert n.recvonly_created == {"audio": 2, "video": 3}


def test_no_second_offer_before_the_answer_one_offer_per_offer_data() -> None:
    n, _ = connected_negotiation()
    n.receive(offer_data(0, 0))
    audio, video = n.local_tracks
    n.offer_created(sdp_with_mids("0", "1"), {audio.track_id: "0", video.track_id: "1"})

    assert n.receive(offer_data(1, 1)) == []
    assert n.receive(offer_data(1, 1)) == []
    assert n.offers_sent == 1

    after_answer = n.receive(
        custom("sdpAnswer", {"type": "answer", "sdp": "v=0\r\n", "midToTrackId": {}})
    )
    assert [type(a) for a in after_answer] == [neg.ApplyAnswer, neg.PrepareOffer]
    n.offer_created(sdp_with_mids("0", "1", "2", "3"), {})
    again = n.receive(
        custom("sdpAnswer", {"type": "answer", "sdp": "v=0\r\n", "midToTrackId": {}})
    )
    assert [type(a) for a in again] == [neg.ApplyAnswer, neg.PrepareOffer]
    n.offer_created(sdp_with_mids("0", "1", "2", "3"), {})
    last = n.receive(
        custom("sdpAnswer", {"type": "answer", "sdp": "v=0\r\n", "midToTrackId": {}})
    )
    assert [type(a) for a in last] == [neg.ApplyAnswer]
    assert n.offers_sent == 3


def test_remote_media_maps_mid_to_track_endpoint_and_user() -> None:
    n, _ = connected_negotiation()
    first_round(n)
    audio, video = n.local_tracks
    n.receive(
        server(
            {
                "type": "tracksAdded",
                "data": {
                    "endpointId": "my_user_102",
                    "trackIdToMetadata": {"my_user_102:x": {}, "my_user_102:y": {}},
                    "tracks": {
                        "my_user_102:x": {"metadata": {}},
                        "my_user_102:y": {"metadata": {}},
                    },
                },
            }
        )
    )
    n.receive(offer_data(1, 1))
    n.offer_created(sdp_with_mids("0", "1", "2", "3"), {})
    n.receive(
        custom(
            "sdpAnswer",
            {
                "type": "answer",
                "sdp": "v=0\r\n",
                "midToTrackId": {
                    "0": audio.track_id,
                    "1": video.track_id,
                    "2": "my_user_102:x",
                    "3": "my_user_102:y",
                },
            },
        )
    )

    remote = n.remote_track_for_mid("3")
    assert remote is not None
    assert (remote.track_id, remote.endpoint_id, remote.user_id, remote.mid) == (
        "my_user_102:y",
        "my_user_102",
        "my_user",
        "3",
    )
    assert n.remote_track_for_mid("0") is None  # own track
    assert n.local_track_for_mid("1") == video


def test_tracks_removed_and_endpoint_removed_end_remote_tracks() -> None:
    n, _ = connected_negotiation()
    n.receive(
        server(
            {
                "type": "tracksAdded",
                "data": {
                    "endpointId": "a_1",
                    "trackIdToMetadata": {"a_1:x": {}, "a_1:y": {}},
                    "tracks": {"a_1:x": {}, "a_1:y": {}},
                },
            }
        )
    )
    n.receive(
        server(
            {
                "type": "tracksAdded",
                "data": {
                    "endpointId": "b_2",
                    "trackIdToMetadata": {"b_2:z": {}},
                    "tracks": {"b_2:z": {}},
                },
            }
        )
    )

    removed = n.receive(
        server(
            {
                "type": "tracksRemoved",
                "data": {"endpointId": "a_1", "trackIds": ["a_1:x"]},
            }
        )
    )
    gone = n.receive(server({"type": "endpointRemoved", "data": {"id": "a_1"}}))

    assert [
        a.track.track_id for a in removed if isinstance(a, neg.RemoteTrackEnded)
    ] == ["a_1:x"]
    assert [a.track.track_id for a in gone if isinstance(a, neg.RemoteTrackEnded)] == [
        "a_1:y"
    ]
    assert isinstance(gone[-1], neg.EndpointLeft)
    assert set(n.remote_tracks) == {"b_2:z"}


def test_no_local_candidate_before_the_first_offer() -> None:
    n, _ = connected_negotiation()
    line = (
        "candidate:5f3a9c0e1b2d4e6f8a7b9c0d1e2f3a4b 1 udp 2130706431"
        " 127.0.0.1 50100 typ host"
    )

    assert n.local_candidate(line, None, 0) == []
    n.receive(offer_data(0, 0))
    assert n.local_candidate(line, "0", 0) == []
    audio, video = n.local_tracks
    actions = n.offer_created(
        sdp_with_mids("0", "1"), {audio.track_id: "0", video.track_id: "1"}
    )

    assert [type(a.event) for a in actions if isinstance(a, neg.SendEvent)] == [
        me.SdpOffer,
        me.LocalCandidate,
        me.LocalCandidate,
    ]
    wire = [
        json.loads(me.encode(a.event))["data"]["data"]
        for a in actions[1:]
        if isinstance(a, neg.SendEvent)
    ]
    assert (
        wire
        == [
            {
                "candidate": "candidate:257109149 1 udp 2130706431"
                " 127.0.0.1 50100 typ host",
                "sdpMLineIndex": 0,
                "sdpMid": "0",
            }
        ]
        * 2
    )
    later = n.local_candidate(line, None, 1)
    assert isinstance(later[0], neg.SendEvent)
    assert json.loads(me.encode(later[0].event))["data"]["data"]["sdpMid"] == "1"


def test_server_candidate_before_the_answer_is_applied_once_the_answer_is_set() -> None:
    n, _ = connected_negotiation()
    n.receive(offer_data(0, 0))
    audio, video = n.local_tracks
    n.offer_created(sdp_with_mids("0", "1"), {audio.track_id: "0", video.track_id: "1"})
    early = custom(
        "candidate",
        {
            "candidate": SERVER_CANDIDATE,
            "sdpMid": "0",
            "sdpMLineIndex": 0,
            "usernameFragment": None,
        },
    )

    assert n.receive(early) == []

    actions = n.receive(
        custom("sdpAnswer", {"type": "answer", "sdp": "v=0\r\n", "midToTrackId": {}})
    )
    assert actions == [
        neg.ApplyAnswer("v=0\r\n"),
        neg.ApplyRemoteCandidate(SERVER_CANDIDATE, "0", 0),
    ]
    # Applied once: later answers do not replay it.
    n.receive(offer_data(0, 0))
    n.offer_created(sdp_with_mids("0", "1"), {})
    assert n.receive(
        custom("sdpAnswer", {"type": "answer", "sdp": "v=0\r\n", "midToTrackId": {}})
    ) == [neg.ApplyAnswer("v=0\r\n")]


def test_candidate_with_null_sdp_mid_is_applied_to_its_m_line_index() -> None:
    n, _ = connected_negotiation()
    first_round(n)
    event = custom(
        "candidate",
        {
            "candidate": "candidate:1 1 UDP 2122252543 127.0.0.1 50000 typ host",
            "sdpMLineIndex": 0,
            "sdpMid": None,
            "usernameFragment": None,
        },
    )

    actions = n.receive(event)

    assert actions == [
        neg.ApplyRemoteCandidate(
            "candidate:1 1 UDP 2122252543 127.0.0.1 50000 typ host", "0", 0
        )
    ]


def test_empty_end_of_candidates_candidate_raises_nothing() -> None:
    n, _ = connected_negotiation()
    first_round(n)

    assert (
        n.receive(
            custom("candidate", {"candidate": "", "sdpMLineIndex": 0, "sdpMid": "0"})
        )
        == []
    )


def test_media_event_decoding_refuses_what_is_not_a_json_string() -> None:
    with pytest.raises(MediaEventError):
        me.decode({"type": "connected"})
    with pytest.raises(MediaEventError):
        me.decode("{not json")
    with pytest.raises(MediaEventError):
        me.decode(
            json.dumps(
                {"type": "custom", "data": {"type": "sdpAnswer", "data": {"sdp": "x"}}}
            )
        )
    unknown = me.decode(
        json.dumps({"type": "custom", "data": {"type": "encodingSwitched"}})
    )
    assert (
        isinstance(unknown, me.UnknownMediaEvent) and unknown.type == "encodingSwitched"
    )


def test_answer_without_offer_and_offer_data_before_connected_are_ignored() -> None:
    n = neg.ClientNegotiation(new_uuid=map(str, itertools.count()).__next__)
    n.connect({})

    assert n.receive(offer_data(1, 1)) == []
    assert n.receive(custom("sdpAnswer", {"type": "answer", "sdp": "x"})) == []
