"""The server's negotiation state of one endpoint (membrane-media-events.md §4.2)."""

from __future__ import annotations

from callbot.server.endpoint_negotiation import (
    Detach,
    EndpointNegotiation,
    OfferData,
    RemoteTrack,
    Subscribe,
    TracksAdded,
    TracksRemoved,
    TrackStatus,
)

ALICE = "alice_1"
CAROL = "carol_3"
A_AUDIO = RemoteTrack("alice_1:a", ALICE, "audio", {})
A_VIDEO = RemoteTrack("alice_1:v", ALICE, "video", {})
C_AUDIO = RemoteTrack("carol_3:a", CAROL, "audio", None)
C_VIDEO = RemoteTrack("carol_3:v", CAROL, "video", None)


def answered_round(
    state: EndpointNegotiation, own: dict[str, str] | None = None
) -> None:
    """The client's offer arrived: place every negotiating track, answer it."""
    taken = set((own or {}).keys()) | {
        o.mid for o in state.outbound.values() if o.mid is not None
    }
    mid = 0
    for outbound in state.tracks_to_place():
        while str(mid) in taken:
            mid += 1
        state.placed(outbound.track.track_id, str(mid))
        taken.add(str(mid))
    state.offer_answered(own or {})


def test_first_tracks_announce_per_origin_then_offer_data() -> None:
    state = EndpointNegotiation()
    outputs = state.tracks_available([A_AUDIO, A_VIDEO, C_AUDIO])
    assert outputs == [
        TracksAdded(ALICE, (A_AUDIO, A_VIDEO)),
        TracksAdded(CAROL, (C_AUDIO,)),
        OfferData({"audio": 2, "video": 1}),
    ]
    assert state.negotiating
    assert {o.status for o in state.outbound.values()} == {TrackStatus.NEGOTIATING}


def test_offer_data_counts_zero_kinds() -> None:
    state = EndpointNegotiation()
    assert state.renegotiate_requested() == [OfferData({"audio": 0, "video": 0})]


def test_tracks_arriving_during_a_round_wait_as_pending() -> None:
    state = EndpointNegotiation()
    state.tracks_available([A_AUDIO])
    assert state.tracks_available([C_VIDEO]) == []
    assert state.outbound[C_VIDEO.track_id].status is TrackStatus.PENDING
    # already known tracks are not announced twice
    assert state.tracks_available([A_AUDIO]) == []
    assert len(state.outbound) == 2


def test_done_subscribes_placed_tracks_and_starts_a_round_for_pending_ones() -> None:
    state = EndpointNegotiation()
    state.tracks_available([A_AUDIO, A_VIDEO])
    answered_round(state)
    state.tracks_available([C_AUDIO])

    outputs = state.negotiation_done()

    assert outputs == [
        Subscribe((A_AUDIO.track_id, A_VIDEO.track_id)),
        TracksAdded(CAROL, (C_AUDIO,)),
        OfferData({"audio": 2, "video": 1}),
    ]
    assert state.negotiating
    assert state.outbound[A_AUDIO.track_id].status is TrackStatus.SUBSCRIBING
    assert state.outbound[C_AUDIO.track_id].status is TrackStatus.NEGOTIATING
    state.subscribed(A_AUDIO.track_id)
    assert state.outbound[A_AUDIO.track_id].status is TrackStatus.SUBSCRIBED


def test_renegotiate_during_a_round_is_queued_not_lost() -> None:
    state = EndpointNegotiation()
    assert state.renegotiate_requested() == [OfferData({"audio": 0, "video": 0})]
    assert state.renegotiate_requested() == []
    assert state.queued

    answered_round(state, {"0": "bob_2:a"})
    assert state.negotiation_done() == [OfferData({"audio": 0, "video": 0})]
    assert state.negotiating and not state.queued

    answered_round(state, {"0": "bob_2:a", "1": "bob_2:v"})
    assert state.negotiation_done() == []
    assert not state.negotiating


def test_done_before_the_offer_is_answered_changes_nothing() -> None:
    state = EndpointNegotiation()
    state.tracks_available([A_VIDEO])
    # the connection flaps to "connected" before the client's offer arrives
    assert state.negotiation_done() == []
    assert state.negotiating
    assert state.outbound[A_VIDEO.track_id].status is TrackStatus.NEGOTIATING


def test_done_while_not_negotiating_is_ignored() -> None:
    state = EndpointNegotiation()
    assert state.negotiation_done() == []
    # an unsolicited offer does not open a round either
    state.offer_answered({"0": "bob_2:a"})
    assert state.negotiation_done() == []
    assert not state.negotiating


def test_round_ends_when_nothing_is_pending() -> None:
    state = EndpointNegotiation()
    state.tracks_available([A_AUDIO])
    answered_round(state)
    assert state.negotiation_done() == [Subscribe((A_AUDIO.track_id,))]
    assert not state.negotiating
    assert state.negotiation_done() == []


def test_unplaced_negotiating_tracks_are_not_subscribed() -> None:
    state = EndpointNegotiation()
    state.tracks_available([A_AUDIO, A_VIDEO])
    state.placed(A_AUDIO.track_id, "0")
    state.offer_answered({})
    assert state.tracks_to_place()[0].track is A_VIDEO
    assert state.negotiation_done() == [Subscribe((A_AUDIO.track_id,))]


def test_answer_map_has_own_and_outbound_mids() -> None:
    state = EndpointNegotiation()
    state.tracks_available([A_AUDIO, A_VIDEO])
    answered_round(state, {"0": "bob_2:a", "1": "bob_2:v"})
    assert state.mid_to_track_id() == {
        "0": "bob_2:a",
        "1": "bob_2:v",
        "2": A_AUDIO.track_id,
        "3": A_VIDEO.track_id,
    }


def test_removed_tracks_keep_counting_and_send_no_offer_data() -> None:
    state = EndpointNegotiation()
    state.tracks_available([A_AUDIO, A_VIDEO, C_AUDIO])
    answered_round(state)
    state.negotiation_done()
    mids = state.mid_to_track_id()

    outputs = state.remote_tracks_removed([A_AUDIO.track_id, A_VIDEO.track_id])

    assert outputs == [
        TracksRemoved(ALICE, (A_AUDIO.track_id, A_VIDEO.track_id)),
        Detach(
            (
                (A_AUDIO.track_id, mids_of(mids, A_AUDIO.track_id)),
                (A_VIDEO.track_id, mids_of(mids, A_VIDEO.track_id)),
            )
        ),
    ]
    assert not any(isinstance(o, OfferData) for o in outputs)
    assert state.removed_tracks == {"audio": 1, "video": 1}
    # the count never shrinks, like the client's set of recvonly transceivers
    assert state.tracks_types() == {"audio": 2, "video": 1}
    assert A_AUDIO.track_id not in state.mid_to_track_id().values()

    state.tracks_available([RemoteTrack("dave_4:v", "dave_4", "video")])
    assert state.outbound["dave_4:v"].status is TrackStatus.NEGOTIATING
    assert state.tracks_types() == {"audio": 2, "video": 2}


def mids_of(mids: dict[str, str], track_id: str) -> str:
    return next(mid for mid, t in mids.items() if t == track_id)


def test_removing_a_pending_track_counts_it_but_tells_nothing() -> None:
    state = EndpointNegotiation()
    state.tracks_available([A_AUDIO])
    state.tracks_available([C_VIDEO])  # pending, never announced
    outputs = state.remote_tracks_removed([C_VIDEO.track_id])
    assert outputs == [Detach(((C_VIDEO.track_id, None),))]
    assert state.tracks_types() == {"audio": 1, "video": 1}


def test_removing_unknown_tracks_is_silent() -> None:
    state = EndpointNegotiation()
    assert state.remote_tracks_removed(["nobody:x"]) == []
    assert state.removed_tracks == {"audio": 0, "video": 0}
