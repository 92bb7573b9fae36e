"""Bot-side sensor sources: what reaches the sink from viewer and room pushes."""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
from typing import Any

import pytest

from callbot.phoenix.client import Socket
from callbot.sensors import delta
from callbot.sensors.measurements import Generic, Measurement, Scalar, Waveform
from callbot.sensors.room import RoomSensors, RoomSource
from callbot.sensors.source import LocalSource, SourceConfig, open_source
from callbot.sensors.viewer import ViewerSource, ViewerStream
from callbot.server.app import ReferenceServer
from callbot.server.clock import ManualClock
from callbot.server.settings import ServerSettings

GOOD_ECG = delta.encode_item([(1000, 0.5), (1010, 0.51), (1020, 0.52)])
ROOM = "0b6f6e3c-2f0e-4b8e-9d55-6a1f0c9e7d21"


def hr_item(value: Any, ts: int, sensor: str = "s1") -> dict[str, Any]:
    return {
        "attribute_id": "heartrate",
        "payload": value,
        "timestamp": ts,
        "sensor_id": sensor,
    }


def ecg_item(value: Any, ts: int) -> dict[str, Any]:
    return {"attribute_id": "ecg", "payload": value, "timestamp": ts, "sensor_id": "s1"}


# -- viewer stream (sans-I/O) ------------------------------------------------------


def test_viewer_stream_types_list_latest_and_delta_values() -> None:
    stream = ViewerStream()
    out = stream.receive(
        {
            "batch": {
                "s1": {
                    "heartrate": hr_item(72, 5000),
                    "ecg": [ecg_item(0.1, 4000), ecg_item(0.2, 4004)],
                },
                "polar-7": {"ecg": GOOD_ECG},
            }
        }
    )
    assert out == [
        Scalar("s1", "heartrate", 72.0, 5000),
        Waveform("s1", "ecg", (0.1, 0.2), (4000, 4004)),
        Waveform("polar-7", "ecg", (0.5, 0.51, 0.52), (1000, 1010, 1020)),
    ]


def test_viewer_stream_absorbs_repeated_pushes() -> None:
    stream = ViewerStream()
    push = {"batch": {"s1": {"heartrate": hr_item(72, 5000), "ecg": GOOD_ECG}}}
    assert len(stream.receive(push)) == 2
    assert stream.receive(push) == []
    assert stream.duplicates == 2
    newer = {"batch": {"s1": {"heartrate": hr_item(73, 6000)}}}
    assert stream.receive(newer) == [Scalar("s1", "heartrate", 73.0, 6000)]


def _blob(raw: bytes, count: int) -> dict[str, Any]:
    return {
        "__delta_encoded__": True,
        "data": base64.b64encode(raw).decode(),
        "sample_count": count,
    }


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        # A normal entry cut after its delta byte.
        (_blob(base64.b64decode(GOOD_ECG["data"])[:-2], 3), "truncated"),
        # A reset cut inside its float32.
        (_blob(base64.b64decode("AegDAAAAAAAAAAAAAIAAAABACgA=")[:-4], 2), "truncated"),
        # Header byte 0x02 (version 2) and 0x11 (reserved nibble set).
        (_blob(b"\x02" + base64.b64decode(GOOD_ECG["data"])[1:], 3), "header"),
        (_blob(b"\x11" + base64.b64decode(GOOD_ECG["data"])[1:], 3), "header"),
        ({"__delta_encoded__": True, "data": "***", "sample_count": 3}, "base64"),
    ],
)
def test_bad_delta_blob_is_dropped_with_a_log_line_and_the_stream_goes_on(
    bad: dict[str, Any], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    stream = ViewerStream()
    with caplog.at_level(logging.WARNING, logger="callbot.sensors.viewer"):
        out = stream.receive(
            {"batch": {"polar-7": {"ecg": bad, "heartrate": hr_item(70, 1, "polar-7")}}}
        )
    assert out == [Scalar("polar-7", "heartrate", 70.0, 1)]
    assert stream.dropped == 1
    [record] = caplog.records
    assert "dropped polar-7/ecg" in record.getMessage()
    assert reason in record.getMessage()
    # The next push is parsed as usual.
    assert stream.receive({"batch": {"polar-7": {"ecg": GOOD_ECG}}}) == [
        Waveform("polar-7", "ecg", (0.5, 0.51, 0.52), (1000, 1010, 1020))
    ]


def test_non_numeric_ecg_sample_is_dropped_and_the_rest_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = ViewerStream()
    with caplog.at_level(logging.WARNING, logger="callbot.sensors.viewer"):
        out = stream.receive(
            {
                "batch": {
                    "s1": {
                        "ecg": [
                            ecg_item(0.1, 4000),
                            ecg_item("n/a", 4004),
                            ecg_item(0.3, 4008),
                        ]
                    }
                }
            }
        )
    assert out == [
        Waveform("s1", "ecg", (0.1,), (4000,)),
        Waveform("s1", "ecg", (0.3,), (4008,)),
    ]
    assert stream.dropped == 1
    assert "s1/ecg sample at 4004" in caplog.records[0].getMessage()
    assert "'n/a' is not a number" in caplog.records[0].getMessage()


def test_unknown_attribute_is_kept_as_a_generic_measurement() -> None:
    stream = ViewerStream()
    spo2 = {
        "attribute_id": "spo2",
        "payload": {"value": 97, "unit": "%"},
        "timestamp": 9,
        "sensor_id": "s1",
    }
    out = stream.receive({"batch": {"s1": {"spo2": spo2}}})
    assert out == [Generic("s1", "spo2", {"value": 97, "unit": "%"}, 9)]
    assert stream.dropped == 0


def test_malformed_push_is_dropped() -> None:
    stream = ViewerStream()
    assert stream.receive({"nope": 1}) == []
    assert stream.receive([1, 2]) == []
    assert stream.dropped == 2


# -- room (sans-I/O) -------------------------------------------------------------------


def room_sensor(value: Any, ts: int) -> dict[str, Any]:
    return {
        "sensor_id": "bot-hr-1",
        "sensor_name": "Bot",
        "attributes": [
            {
                "id": "heartrate",
                "attribute_type": "heartrate",
                "last_value": {"payload": value, "timestamp": ts},
            },
            {"id": "battery", "last_value": None},
        ],
    }


def test_room_state_yields_last_values_once() -> None:
    room = RoomSensors()
    state = {"room_id": ROOM, "sensors": [room_sensor(72, 100)], "member_count": 1}
    assert room.room_state(state) == [Scalar("bot-hr-1", "heartrate", 72.0, 100)]
    # The same last value after a refresh (or a doubled push) is absorbed.
    assert room.room_state(state) == []
    added = {"room_id": ROOM, "sensor": room_sensor(75, 200)}
    assert room.sensor_added(added) == [Scalar("bot-hr-1", "heartrate", 75.0, 200)]
    room.sensor_removed({"room_id": ROOM, "sensor_id": "bot-hr-1"})
    assert room.sensors == {}
    assert room.room_state({"sensors": "x"}) == []
    assert room.dropped == 1


# -- sources over sockets -----------------------------------------------------------


def join_params(sensor_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "connector_id": "c-1",
        "connector_name": "c",
        "sensor_id": sensor_id,
        "sensor_name": "n",
        "sensor_type": "ecg",
        "attributes": {},
        "sampling_rate": 250,
        "batch_size": 1,
        "bearer_token": "missing",
        **extra,
    }


async def until(predicate: Any, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@pytest.mark.integration
@pytest.mark.parametrize("delta_encoding", [False, True])
async def test_viewer_source_decodes_what_a_sensor_published(
    delta_encoding: bool,
) -> None:
    settings = ServerSettings(port=0, delta_encoding=delta_encoding)
    clock = ManualClock()
    async with ReferenceServer(settings, clock) as server:
        sock = Socket(server.url)
        await sock.connect()
        try:
            publisher = sock.channel("sensocto:sensor:polar-7", join_params("polar-7"))
            await publisher.join(timeout=2)
            token = server.dev_mint_viewer_token(["polar-7"], "high")
            got: list[Measurement] = []
            source = ViewerSource(sock, token, ["polar-7"])
            task = asyncio.create_task(source.run(got.extend))
            await until(
                lambda: (
                    source.stream.batches == 0
                    and len(server.pubsub.subscribers("data:polar-7")) == 1
                )
            )

            samples = [
                (10_000 + 4 * i, round(0.3 * ((i % 50) - 25) / 25, 3))
                for i in range(250)
            ]
            items = [
                {"attribute_id": "ecg", "payload": v, "timestamp": t}
                for t, v in samples
            ]
            for chunk in range(0, 250, 50):
                publisher.push_nowait("measurements_batch", items[chunk : chunk + 50])
                await publisher.push("ping", {}, timeout=1)
                await asyncio.sleep(0.02)
                clock.advance(64)
            await until(
                lambda: (
                    sum(len(m.payload) for m in got if isinstance(m, Waveform)) == 250
                )
            )
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

            decoded = [s for m in got if isinstance(m, Waveform) for s in m.samples()]
            assert [t for t, _ in decoded] == [t for t, _ in samples]
            worst = max(
                abs(a - b) for (_, a), (_, b) in zip(decoded, samples, strict=True)
            )
            assert worst <= 0.005 + 1e-6
            if not delta_encoding:
                assert worst == 0.0
        finally:
            await sock.close()


@pytest.mark.integration
async def test_room_source_refreshes_last_values() -> None:
    async with ReferenceServer(ServerSettings(port=0), ManualClock()) as server:
        sock = Socket(server.url)
        await sock.connect()
        try:
            publisher = sock.channel(
                "sensocto:sensor:bot-hr-1", join_params("bot-hr-1", room_id=ROOM)
            )
            await publisher.join(timeout=2)
            publisher.push_nowait(
                "measurement",
                {"attribute_id": "heartrate", "payload": 72, "timestamp": 100},
            )
            await publisher.push("ping", {}, timeout=1)
            got: list[Measurement] = []
            source = open_source(
                SourceConfig(kind="room", room_uuid=ROOM, refresh_seconds=0.1), sock
            )
            assert isinstance(source, RoomSource)
            task = asyncio.create_task(source.run(got.extend))
            await until(lambda: len(got) == 1)
            publisher.push_nowait(
                "measurement",
                {"attribute_id": "heartrate", "payload": 80, "timestamp": 200},
            )
            await until(lambda: len(got) == 2)
            await until(lambda: source.refreshes >= 3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # Unchanged values across refreshes are not repeated.
            assert got == [
                Scalar("bot-hr-1", "heartrate", 72.0, 100),
                Scalar("bot-hr-1", "heartrate", 80.0, 200),
            ]
        finally:
            await sock.close()


async def test_local_synthetic_source_paces_by_the_wall_clock() -> None:
    now = [1000.0]
    config = SourceConfig(kind="local", local_interval=0.001)
    source = LocalSource(config, wall_clock=lambda: now[0])
    got: list[Measurement] = []

    def sink(ms: list[Measurement]) -> None:
        got.extend(ms)
        now[0] += 1.0

    task = asyncio.create_task(source.run(sink))
    await until(lambda: now[0] >= 1004.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    ecg = [m for m in got if isinstance(m, Waveform) and m.attribute_id == "ecg"]
    samples = [t for m in ecg for t in m.timestamps]
    assert samples[0] == 1_000_000  # sample 0 at the start
    assert all(b - a == 4 for a, b in itertools.pairwise(samples))
    assert any(isinstance(m, Scalar) and m.attribute_id == "heartrate" for m in got)


def test_source_config_checks_what_each_kind_needs() -> None:
    with pytest.raises(ValueError):
        SourceConfig(kind="viewer")
    with pytest.raises(ValueError):
        SourceConfig(kind="room")
    with pytest.raises(ValueError):
        open_source(SourceConfig(kind="viewer", viewer_token="t"), None)
