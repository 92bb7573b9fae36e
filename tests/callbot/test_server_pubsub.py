"""PubSub delivery: fastlane, intercepts, the duplicate subscription."""

from callbot.server.pubsub import Broadcast, PubSub, ServerEvent
from tests.callbot.server_fakes import Recorder

INTERCEPTS = frozenset({"participant_speaking"})


def channel_like(pubsub: PubSub) -> tuple[Recorder, list[Broadcast]]:
    """A subscriber set up like a call channel: fastlane plus a duplicate."""
    channel = Recorder(INTERCEPTS)
    fastlane: list[Broadcast] = []
    pubsub.subscribe("call:r1", channel, duplicate=True)
    pubsub.subscribe("call:r1", channel, fastlane=fastlane.append)
    return channel, fastlane


def test_server_events_and_intercepted_broadcasts_arrive_twice() -> None:
    pubsub = PubSub()
    channel, fastlane = channel_like(pubsub)
    pubsub.broadcast(ServerEvent("call:r1", "participant_left", {"user_id": "u"}))
    pubsub.broadcast(Broadcast("call:r1", "participant_speaking", {"speaking": True}))
    assert [e for e, _ in channel.events()] == ["participant_left"] * 2 + [
        "participant_speaking"
    ] * 2
    assert fastlane == []


def test_unintercepted_broadcast_goes_fastlane_once_and_raw_once() -> None:
    pubsub = PubSub()
    channel, fastlane = channel_like(pubsub)
    sender, _ = channel_like(pubsub)
    tier_request = Broadcast("call:r1", "quality_tier_request", {"tier": "active"})
    pubsub.broadcast(tier_request, exclude=sender)
    assert fastlane == [tier_request]
    assert channel.messages == [(tier_request, True)]  # the copy that crashes
    assert sender.messages == []


def test_without_duplicates_only_the_crashing_copy_remains() -> None:
    pubsub = PubSub(duplicate_pushes=False)
    channel, fastlane = channel_like(pubsub)
    pubsub.broadcast(ServerEvent("call:r1", "participant_left", {}))
    pubsub.broadcast(Broadcast("call:r1", "quality_tier_request", {}))
    assert [e for e, _ in channel.events()] == [
        "participant_left",
        "quality_tier_request",
    ]
    assert len(fastlane) == 1


def test_unsubscribe_all_and_subscribers() -> None:
    pubsub = PubSub()
    channel, _ = channel_like(pubsub)
    other = Recorder()
    pubsub.subscribe("call:r1", other)
    assert pubsub.subscribers("call:r1") == [channel, other]
    pubsub.unsubscribe_all(channel)
    assert pubsub.subscribers("call:r1") == [other]
