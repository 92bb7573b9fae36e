"""The bot as a sensor: joins, attributes and backpressure, against the server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from callbot.errors import ReplyError, SensorDataError
from callbot.phoenix.client import Socket
from callbot.sensors.measurements import Scalar, Waveform
from callbot.sensors.publisher import PublisherConfig, SensorPublisher
from callbot.server.app import ReferenceServer
from callbot.server.clock import ManualClock
from callbot.server.settings import ServerSettings

SENSOR = "bot-hr-1"
ROOM = "0b6f6e3c-2f0e-4b8e-9d55-6a1f0c9e7d21"

pytestmark = pytest.mark.integration


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def hr(value: float, ts: int) -> Scalar:
    return Scalar(SENSOR, "heartrate", value, ts)


def ecg(start_ms: int, seconds: float) -> Waveform:
    n = int(seconds * 250)
    return Waveform(
        SENSOR,
        "ecg",
        tuple(round((i % 100) / 100, 2) for i in range(n)),
        tuple(start_ms + 4 * i for i in range(n)),
    )


async def until(predicate: Any, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@pytest.fixture
async def server() -> Any:
    async with ReferenceServer(ServerSettings(port=0), ManualClock()) as srv:
        yield srv


@pytest.fixture
async def socket(server: ReferenceServer) -> Any:
    sock = Socket(server.url)
    await sock.connect()
    yield sock
    await sock.close()


async def stored(
    server: ReferenceServer, socket: Socket, publisher: SensorPublisher
) -> int:
    # A ping's reply comes after everything pushed before it was handled.
    channel = publisher._joined()
    await channel.push("ping", {}, timeout=1)
    return server.sensors.sensors[SENSOR].measurements


async def test_join_with_the_nine_keys_and_attributes(
    server: ReferenceServer, socket: Socket
) -> None:
    config = PublisherConfig(
        sensor_id=SENSOR,
        room_id=ROOM,
        attributes={"heartrate": {"attribute_type": "heartrate", "sampling_rate": 1}},
    )
    params = config.join_params()
    assert sorted(params) == sorted(
        [
            "connector_id",
            "connector_name",
            "sensor_id",
            "sensor_name",
            "sensor_type",
            "attributes",
            "sampling_rate",
            "batch_size",
            "bearer_token",
            "room_id",
        ]
    )
    publisher = SensorPublisher(socket, config)
    await publisher.start(timeout=2)
    sensor = server.sensors.sensors[SENSOR]
    assert sensor.room_id == ROOM
    assert list(sensor.attributes) == ["heartrate"]

    await publisher.register("ecg", {"attribute_type": "ecg", "sampling_rate": 250})
    await publisher.unregister("heartrate")
    assert await publisher.update_connector("Coach bot") == "Coach bot"
    assert list(sensor.attributes) == ["ecg"]
    assert sensor.attributes["ecg"].metadata["sampling_rate"] == 250
    assert sensor.connector_name == "Coach bot"
    with pytest.raises(SensorDataError):
        await publisher.register("_nope", {})
    with pytest.raises(ReplyError) as info:
        await publisher.update_connector("")
    assert info.value.reason == "invalid_connector_name"
    await publisher.close()
    await until(lambda: SENSOR not in server.sensors.sensors)


async def test_refused_without_a_token(socket: Socket) -> None:
    publisher = SensorPublisher(
        socket, PublisherConfig(sensor_id=SENSOR, bearer_token="")
    )
    with pytest.raises(ReplyError) as info:
        await publisher.start(timeout=2)
    assert info.value.reason == "unauthorized"
    await publisher.close()


async def test_backpressure_batches_pauses_and_unpauses(
    server: ReferenceServer, socket: Socket
) -> None:
    clock = FakeClock()
    publisher = SensorPublisher(socket, PublisherConfig(sensor_id=SENSOR), clock=clock)
    await publisher.start(timeout=2)
    await until(lambda: len(publisher.configs) == 1)
    assert publisher.configs[0].attention_level == "none"
    assert publisher.policy.config.recommended_batch_size == 20

    # medium: batches of 5, or 500 ms after the first queued item.
    server.set_sensor_attention(SENSOR, "medium")
    await until(lambda: len(publisher.configs) == 2)
    publisher.publish([hr(70 + i, 1000 + i) for i in range(5)])
    assert publisher.sent[-1].event == "measurements_batch"
    assert len(publisher.sent[-1].items) == 5
    assert await stored(server, socket, publisher) == 5

    publisher.publish([hr(80, 2000), hr(81, 2001)])
    clock.now += 0.499
    publisher.poll()
    assert len(publisher.sent) == 1
    clock.now += 0.002
    publisher.poll()
    assert len(publisher.sent) == 2 and len(publisher.sent[-1].items) == 2
    assert await stored(server, socket, publisher) == 7

    # low attention + memory protection: paused, nothing goes out.
    server.set_sensor_attention(SENSOR, "low")
    server.set_memory_protection(True)
    await until(lambda: publisher.policy.config.paused)
    assert publisher.configs[-1].recommended_batch_window == 10_000
    publisher.publish([hr(90, 3000), ecg(3000, 3.0), hr(91, 6000), ecg(6000, 3.0)])
    publisher.publish([hr(92, 9000)])
    for _ in range(3):
        clock.now += 10.0  # past a whole window each time
        publisher.poll()
    assert len(publisher.sent) == 2
    assert await stored(server, socket, publisher) == 7
    # Kept: the newest heart rate and the last 2 s of ECG (500 samples).
    assert publisher.policy.held == 1 + 500

    # Unpaused: only the newest values go, at once, then batching goes on.
    server.set_memory_protection(False)
    await until(lambda: not publisher.policy.config.paused)
    assert len(publisher.sent) == 3
    unpaused = publisher.sent[-1].items
    hrs = [i for i in unpaused if i["attribute_id"] == "heartrate"]
    ecgs = [i["timestamp"] for i in unpaused if i["attribute_id"] == "ecg"]
    assert hrs == [{"attribute_id": "heartrate", "payload": 92.0, "timestamp": 9000}]
    assert len(ecgs) == 500 and min(ecgs) > 8996 - 2000 and max(ecgs) == 8996
    assert await stored(server, socket, publisher) == 7 + 501
    last = server.sensors.sensors[SENSOR].attributes["heartrate"].last_value
    assert last == {"payload": 92.0, "timestamp": 9000}

    # low, not paused: windows of 2000 ms, batches of 10.
    assert publisher.policy.config.recommended_batch_window == 2000
    publisher.publish([hr(93, 10_000)])
    clock.now += 1.9
    publisher.poll()
    assert len(publisher.sent) == 3
    # high attention flushes at once, then every item goes alone.
    server.set_sensor_attention(SENSOR, "high")
    await until(lambda: len(publisher.sent) == 4)
    assert publisher.sent[-1].event == "measurement"
    publisher.publish([hr(94, 11_000)])
    assert publisher.sent[-1].payload == {
        "attribute_id": "heartrate",
        "payload": 94.0,
        "timestamp": 11_000,
    }

    # Close flushes what is queued.
    server.set_sensor_attention(SENSOR, "medium")
    await until(lambda: publisher.policy.config.recommended_batch_size == 5)
    publisher.publish([hr(95, 12_000), hr(96, 12_001)])
    sent_before = len(publisher.sent)
    await publisher.close()
    assert len(publisher.sent) == sent_before + 1
    assert [i["payload"] for i in publisher.sent[-1].items] == [95.0, 96.0]


async def test_close_while_paused_sends_nothing(
    server: ReferenceServer, socket: Socket
) -> None:
    server.set_system_load("critical")
    clock = FakeClock()
    publisher = SensorPublisher(socket, PublisherConfig(sensor_id=SENSOR), clock=clock)
    await publisher.start(timeout=2)
    await until(lambda: len(publisher.configs) == 1)
    assert publisher.configs[0].paused  # attention none + critical load
    publisher.publish([hr(70, 1)])
    await publisher.close()
    assert list(publisher.sent) == []
