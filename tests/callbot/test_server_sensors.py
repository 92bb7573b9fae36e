"""The reference server's sensor, viewer and room channels, over real sockets."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from callbot.errors import ReplyError
from callbot.phoenix.client import Socket
from callbot.sensors import delta
from callbot.server.app import ReferenceServer
from callbot.server.clock import ManualClock
from callbot.server.sensors import backpressure_config, inferred_type
from callbot.server.settings import RoomConfig, ServerSettings

ROOM = "0b6f6e3c-2f0e-4b8e-9d55-6a1f0c9e7d21"
T0 = 1_772_446_530_000


def join_params(sensor_id: str = "bot-hr-1", **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "connector_id": "c-1",
        "connector_name": "Bot connector",
        "sensor_id": sensor_id,
        "sensor_name": "Bot heart rate",
        "sensor_type": "heartrate",
        "attributes": {},
        "sampling_rate": 1,
        "batch_size": 1,
        "bearer_token": "missing",
    }
    params.update(extra)
    return params


# -- sans-I/O: the config table ------------------------------------------------


@pytest.mark.parametrize(
    ("attention", "load", "memory", "window", "size", "multiplier", "paused"),
    [
        ("high", "normal", False, 100, 1, 1.0, False),
        ("medium", "elevated", False, 750, 5, 1.5, False),
        ("low", "high", False, 6000, 10, 3.0, False),
        ("low", "high", True, 30000, 10, 15.0, True),
        ("none", "critical", False, 25000, 20, 5.0, True),
        ("high", "critical", True, 2500, 1, 25.0, False),
        ("medium", "normal", True, 2500, 5, 5.0, False),
    ],
)
def test_backpressure_table_and_pause_rule(
    attention: str,
    load: str,
    memory: bool,
    window: int,
    size: int,
    multiplier: float,
    paused: bool,
) -> None:
    config = backpressure_config(attention, load, memory, 123)
    assert config == {
        "attention_level": attention,
        "system_load": load,
        "memory_protection_active": memory,
        "paused": paused,
        "recommended_batch_window": window,
        "recommended_batch_size": size,
        "load_multiplier": multiplier,
        "timestamp": 123,
    }


def test_inferred_attribute_types() -> None:
    assert inferred_type("ECG") == "ecg"
    assert inferred_type("bpm") == "heartrate"
    assert inferred_type("gps") == "geolocation"
    assert inferred_type("spo2") == "generic"
    assert inferred_type("where", {"latitude": 1, "longitude": 2}) == "geolocation"


# -- over sockets -----------------------------------------------------------------


class Pushes:
    def __init__(self) -> None:
        self.items: list[tuple[str, Any]] = []
        self.changed = asyncio.Event()

    def recorder(self, event: str) -> Any:
        def record(payload: Any) -> None:
            self.items.append((event, payload))
            self.changed.set()

        return record

    async def wait_for(self, count: int, timeout: float = 2.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.items) < count:
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def server() -> Any:
    settings = ServerSettings(port=0, rooms=[RoomConfig(name=ROOM)])
    async with ReferenceServer(settings, ManualClock(start_ms=0)) as srv:
        yield srv


@pytest.fixture
async def socket(server: ReferenceServer) -> Any:
    sock = Socket(server.url)
    await sock.connect()
    yield sock
    await sock.close()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.005)


@pytest.mark.integration
async def test_sensor_join_checks(server: ReferenceServer, socket: Socket) -> None:
    missing = join_params()
    del missing["batch_size"]
    with pytest.raises(ReplyError) as info:
        await socket.channel("sensocto:sensor:bot-hr-1", missing).join(timeout=2)
    assert info.value.reason == "join crashed"

    with pytest.raises(ReplyError) as info:
        await socket.channel("sensocto:sensor:other", join_params()).join(timeout=2)
    assert info.value.reason == "join crashed"

    for token in (None, ""):
        params = join_params(bearer_token=token)
        with pytest.raises(ReplyError) as info:
            await socket.channel("sensocto:sensor:bot-hr-1", params).join(timeout=2)
        assert info.value.reason == "unauthorized"

    with pytest.raises(ReplyError) as info:
        params = join_params(bearer_token="eyJ.not-ours")
        await socket.channel("sensocto:sensor:bot-hr-1", params).join(timeout=2)
    assert info.value.reason == "unauthorized"

    token = server.dev_mint_bearer_token("user-1")
    params = join_params(bearer_token=token, extra_key=True)
    assert await socket.channel("sensocto:sensor:bot-hr-1", params).join(2) == {}
    assert server.sensors.sensors["bot-hr-1"].connections == 1


@pytest.mark.integration
async def test_join_pushes_config_then_follows_attention_load_and_memory(
    server: ReferenceServer, socket: Socket
) -> None:
    pushes = Pushes()
    channel = socket.channel("sensocto:sensor:bot-hr-1", join_params())
    channel.on("backpressure_config", pushes.recorder("config"))
    await channel.join(timeout=2)
    await pushes.wait_for(1)
    first = pushes.items[0][1]
    assert first["attention_level"] == "none"
    assert first["recommended_batch_window"] == 5000
    assert first["recommended_batch_size"] == 20
    assert first["paused"] is False
    assert first["timestamp"] == int(server.clock.utc_now().timestamp() * 1000)

    server.set_sensor_attention("bot-hr-1", "low")
    server.set_system_load("high")
    server.set_memory_protection(True)
    await pushes.wait_for(4)
    configs = [p for _, p in pushes.items]
    assert [
        (c["attention_level"], c["system_load"], c["recommended_batch_window"])
        for c in configs[1:]
    ] == [("low", "normal", 2000), ("low", "high", 6000), ("low", "high", 30000)]
    assert configs[3]["paused"] is True
    assert configs[3]["load_multiplier"] == 15.0

    # Setting the same level again pushes nothing.
    server.set_memory_protection(True)
    server.set_sensor_attention("bot-hr-1", "high")
    await pushes.wait_for(5)
    await settle()
    assert len(pushes.items) == 5
    assert pushes.items[4][1]["paused"] is False


@pytest.mark.integration
async def test_sensor_events_and_replies(
    server: ReferenceServer, socket: Socket
) -> None:
    channel = socket.channel("sensocto:sensor:bot-hr-1", join_params(room_id=ROOM))
    await channel.join(timeout=2)

    with pytest.raises(ReplyError) as info:
        await channel.push(
            "measurement",
            {"attribute_id": "_bad", "payload": 1, "timestamp": T0},
            timeout=1,
        )
    assert info.value.reason == "invalid_attribute_id"

    with pytest.raises(ReplyError) as info:
        await channel.push(
            "measurements_batch",
            [
                {"attribute_id": "ecg", "payload": 0.5, "timestamp": T0},
                {"attribute_id": "ecg", "payload": 0.5},
                {"attribute_id": "-x", "payload": 0.5, "timestamp": T0},
            ],
            timeout=1,
        )
    assert info.value.response == {"reason": "invalid_batch", "failed_count": 2}

    for action, reason in (("add", "invalid_action"), ("register", None)):
        body = {"action": action, "attribute_id": "spo2", "metadata": {"unit": "%"}}
        if reason:
            with pytest.raises(ReplyError) as info:
                await channel.push("update_attributes", body, timeout=1)
            assert info.value.reason == reason
        else:
            channel.push_nowait("update_attributes", body)

    assert await channel.push("ping", {"n": 1}, timeout=1) == {"n": 1}
    assert await channel.push(
        "update_connector", {"connector_name": "Renamed"}, timeout=1
    ) == {"connector_name": "Renamed"}
    with pytest.raises(ReplyError) as info:
        await channel.push("update_connector", {"connector_name": ""}, timeout=1)
    assert info.value.reason == "invalid_connector_name"

    channel.push_nowait("measurement", {"attribute_id": "heartrate", "payload": 72})
    channel.push_nowait(
        "measurement", {"attribute_id": "heartrate", "payload": 73, "timestamp": T0}
    )
    channel.push_nowait(
        "measurement",
        {"attribute_id": "imu", "payload": "1,0.1,0.2,0.3,1,2,3", "timestamp": T0},
    )
    channel.push_nowait("whatever", {})
    await channel.push("ping", {}, timeout=1)

    sensor = server.sensors.sensors["bot-hr-1"]
    assert sensor.connector_name == "Renamed"
    assert sensor.attributes["heartrate"].last_value == {"payload": 73, "timestamp": T0}
    assert sensor.attributes["heartrate"].attribute_type == "heartrate"
    assert sensor.attributes["spo2"].metadata == {"unit": "%"}
    assert sensor.attributes["imu"].last_value == {
        "payload": {
            "accelerometer": {"x": 0.1, "y": 0.2, "z": 0.3},
            "gyroscope": {"x": 1.0, "y": 2.0, "z": 3.0},
        },
        "timestamp": T0,
    }
    assert "ecg" not in sensor.attributes  # the invalid batch stored nothing

    await channel.leave(timeout=1)
    await settle()
    assert "bot-hr-1" not in server.sensors.sensors


@pytest.mark.integration
async def test_viewer_token_and_flush_intervals(
    server: ReferenceServer, socket: Socket
) -> None:
    clock = server.clock
    assert isinstance(clock, ManualClock)
    publisher = socket.channel("sensocto:sensor:bot-hr-1", join_params())
    await publisher.join(timeout=2)

    with pytest.raises(ReplyError) as info:
        await socket.channel("viewer:data:forged").join(timeout=2)
    assert info.value.reason == "unauthorized"
    with pytest.raises(ReplyError) as info:
        await socket.channel("viewer:other").join(timeout=2)
    assert info.value.reason == "invalid_topic"

    token = server.dev_mint_viewer_token(["bot-hr-1"], quality="medium")
    pushes = Pushes()
    viewer = socket.channel(f"viewer:data:{token}")
    viewer.on("sensor_batch", pushes.recorder("batch"))
    assert await viewer.join(timeout=2) == {}

    ecg = [
        {"attribute_id": "ecg", "payload": 0.5 + i / 100, "timestamp": T0 + i * 4}
        for i in range(3)
    ]
    hr = [
        {"attribute_id": "heartrate", "payload": v, "timestamp": T0 + i}
        for i, v in enumerate((71, 72))
    ]
    publisher.push_nowait("measurements_batch", ecg + hr)
    await publisher.push("ping", {}, timeout=1)
    await settle()

    clock.advance(127)  # medium: 128 ms
    await settle()
    assert pushes.items == []
    clock.advance(1)
    await pushes.wait_for(1)
    batch = pushes.items[0][1]["batch"]
    assert batch["bot-hr-1"]["heartrate"] == {
        "attribute_id": "heartrate",
        "payload": 72,
        "timestamp": T0 + 1,
        "sensor_id": "bot-hr-1",
    }
    assert [i["payload"] for i in batch["bot-hr-1"]["ecg"]] == [0.5, 0.51, 0.52]

    # Nothing new: no push at the next flush.
    clock.advance(128 * 3)
    await settle()
    assert len(pushes.items) == 1

    # Not visible: nothing arrives.
    viewer.push_nowait("set_visible_sensors", {"sensor_ids": ["someone-else"]})
    await settle()
    publisher.push_nowait("measurement", hr[0])
    await publisher.push("ping", {}, timeout=1)
    await settle()
    clock.advance(256)
    await settle()
    assert len(pushes.items) == 1

    # Expired after an hour (the idle timeout closed the old socket meanwhile).
    clock.advance(3_600_001)
    fresh = Socket(server.url)
    await fresh.connect()
    try:
        with pytest.raises(ReplyError) as info:
            await fresh.channel(f"viewer:data:{token}").join(timeout=2)
        assert info.value.reason == "unauthorized"
    finally:
        await fresh.close()


@pytest.mark.integration
async def test_viewer_delta_encoding_switch(server: ReferenceServer) -> None:
    clock = server.clock
    assert isinstance(clock, ManualClock)
    server.set_delta_encoding(True)
    sock = Socket(server.url)
    await sock.connect()
    try:
        publisher = sock.channel("sensocto:sensor:polar-7", join_params("polar-7"))
        await publisher.join(timeout=2)
        token = server.dev_mint_viewer_token(["polar-7"], quality="high")
        pushes = Pushes()
        viewer = sock.channel(f"viewer:data:{token}")
        viewer.on("sensor_batch", pushes.recorder("batch"))
        await viewer.join(timeout=2)

        samples = [(1000, 0.5), (1010, 0.51), (1020, 0.52)]
        publisher.push_nowait(
            "measurements_batch",
            [{"attribute_id": "ecg", "payload": v, "timestamp": t} for t, v in samples]
            + [{"attribute_id": "respiration", "payload": 0.1, "timestamp": 1000}],
        )
        await publisher.push("ping", {}, timeout=1)
        await settle()
        clock.advance(64)
        await pushes.wait_for(1)
        batch = pushes.items[0][1]["batch"]["polar-7"]
        assert batch["ecg"] == {
            "__delta_encoded__": True,
            "data": "AegDAAAAAAAAAAAAPwEKAAEKAA==",
            "sample_count": 3,
        }
        # One respiration sample stays a list.
        assert batch["respiration"] == [
            {
                "attribute_id": "respiration",
                "payload": 0.1,
                "timestamp": 1000,
                "sensor_id": "polar-7",
            }
        ]
        assert delta.decode(base64.b64decode(batch["ecg"]["data"])).pairs() == [
            (1000, 0.5),
            (1010, 0.51),
            (1020, 0.52),
        ]
    finally:
        await sock.close()


@pytest.mark.integration
async def test_paused_viewer_gets_nothing(
    server: ReferenceServer, socket: Socket
) -> None:
    clock = server.clock
    assert isinstance(clock, ManualClock)
    publisher = socket.channel("sensocto:sensor:bot-hr-1", join_params())
    await publisher.join(timeout=2)
    token = server.dev_mint_viewer_token(["bot-hr-1"], quality="paused")
    pushes = Pushes()
    viewer = socket.channel(f"viewer:data:{token}")
    viewer.on("sensor_batch", pushes.recorder("batch"))
    await viewer.join(timeout=2)
    publisher.push_nowait(
        "measurement", {"attribute_id": "heartrate", "payload": 70, "timestamp": T0}
    )
    await publisher.push("ping", {}, timeout=1)
    await settle()
    clock.advance(2000)
    await settle()
    assert pushes.items == []

    server.sensors.set_viewer_quality(token, "low")
    clock.advance(500)  # the paused check interval, then low's 250 ms
    await settle()
    publisher.push_nowait(
        "measurement", {"attribute_id": "heartrate", "payload": 71, "timestamp": T0 + 1}
    )
    await publisher.push("ping", {}, timeout=1)
    await settle()
    clock.advance(250)
    await pushes.wait_for(1)
    assert pushes.items[0][1]["batch"]["bot-hr-1"]["heartrate"]["payload"] == 71


@pytest.mark.integration
async def test_room_state_and_sensor_events(server: ReferenceServer) -> None:
    watcher = Socket(server.url)
    sensor_socket = Socket(server.url)
    await watcher.connect()
    await sensor_socket.connect()
    try:
        with pytest.raises(ReplyError) as info:
            await watcher.channel("room:not-a-uuid").join(timeout=2)
        assert info.value.reason == "invalid room id"

        publisher = sensor_socket.channel(
            "sensocto:sensor:bot-hr-1", join_params(room_id=ROOM)
        )
        await publisher.join(timeout=2)
        publisher.push_nowait(
            "measurement", {"attribute_id": "heartrate", "payload": 72, "timestamp": T0}
        )
        await publisher.push("ping", {}, timeout=1)

        pushes = Pushes()
        room = watcher.channel(f"room:{ROOM}")
        for event in ("room_state", "sensor_added", "sensor_removed"):
            room.on(event, pushes.recorder(event))
        await room.join(timeout=2)
        await pushes.wait_for(1)
        event, state = pushes.items[0]
        assert event == "room_state"
        assert state["room_id"] == ROOM
        assert state["member_count"] == 0
        [sensor] = state["sensors"]
        assert sensor["sensor_id"] == "bot-hr-1"
        assert sensor["activity_status"] == "active"
        assert sensor["attributes"] == [
            {
                "id": "heartrate",
                "attribute_type": "heartrate",
                "attribute_name": "heartrate",
                "last_value": {"payload": 72, "timestamp": T0},
            }
        ]

        # The canonical topic doubles the room's events, as the real server does.
        await publisher.leave(timeout=1)
        await pushes.wait_for(3)
        await settle()
        assert [e for e, _ in pushes.items[1:]] == ["sensor_removed"] * 2
        assert pushes.items[1][1] == {"room_id": ROOM, "sensor_id": "bot-hr-1"}

        second = sensor_socket.channel(
            "sensocto:sensor:resp-1", join_params("resp-1", room_id=ROOM)
        )
        await second.join(timeout=2)
        await pushes.wait_for(5)
        assert [e for e, _ in pushes.items[3:]] == ["sensor_added"] * 2
        assert pushes.items[3][1]["sensor"]["sensor_id"] == "resp-1"
    finally:
        await watcher.close()
        await sensor_socket.close()


@pytest.mark.integration
async def test_private_room_admits_members_by_socket_token(
    server: ReferenceServer,
) -> None:
    private = "6f1c1c36-8d7a-4b0e-9a53-2b1b43d4b0aa"
    server.rooms.put(RoomConfig(name=private, public=False, owner="ann"))
    stranger = Socket(server.url)
    owner = Socket(server.url, {"token": server.sensors.dev_mint_user_token("ann")})
    await stranger.connect()
    await owner.connect()
    try:
        with pytest.raises(ReplyError) as info:
            await stranger.channel(f"room:{private}").join(timeout=2)
        assert info.value.reason == "unauthorized"
        assert await owner.channel(f"room:{private}").join(timeout=2) == {}
    finally:
        await stranger.close()
        await owner.close()


@pytest.mark.integration
async def test_admin_http_drives_sensor_test_control() -> None:
    import httpx

    settings = ServerSettings(port=0, admin_port=0)
    async with ReferenceServer(settings, ManualClock()) as server:
        assert server.admin_url is not None
        async with httpx.AsyncClient(base_url=server.admin_url) as http:
            reply = await http.post(
                "/sensors/bot-hr-1/attention", json={"level": "low"}
            )
            assert reply.status_code == 200
            assert reply.json()["recommended_batch_window"] == 2000
            bad = await http.post("/sensors/bot-hr-1/attention", json={"level": "x"})
            assert bad.status_code == 422
            await http.post("/system_load", json={"level": "critical"})
            await http.post("/memory_protection", json={"enabled": True})
            assert server.sensors.config_for("bot-hr-1")["paused"] is True
            token = (
                await http.post("/dev/viewer_tokens", json={"sensor_ids": ["bot-hr-1"]})
            ).json()["token"]
            session = server.sensors.viewer_session(token)
            assert session is not None and session.quality == "high"
