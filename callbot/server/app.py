"""The reference call server: websockets on loopback, test control, admin HTTP."""

from __future__ import annotations

import asyncio
import logging
import socket as socketlib
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as serve_websockets
from websockets.http11 import Request, Response

from callbot.server.call_channel import (
    LOBBY,
    TOPIC_PREFIX,
    CallChannel,
    call_channel_factory,
)
from callbot.server.call_server import (
    CallServer,
    EngineFactory,
    MediaEngine,
    default_engine_factory,
)
from callbot.server.calls import Calls
from callbot.server.clock import Clock, ManualClock, SystemClock
from callbot.server.network_conditions import (
    NetworkConditions,
    NetworkConditionsControl,
)
from callbot.server.pubsub import PubSub
from callbot.server.room_channel import room_channel_factory
from callbot.server.rooms import RoomStore
from callbot.server.sensor_channel import sensor_channel_factory
from callbot.server.sensors import AttentionLevel, SensorRegistry
from callbot.server.settings import ServerSettings
from callbot.server.socket import (
    TopicRouter,
    UserSocket,
    check_upgrade,
    socket_params,
)
from callbot.server.viewer_channel import viewer_channel_factory

logger = logging.getLogger(__name__)


class ReferenceServer:
    """Sensocto's user socket, CallChannel and CallServer on one loopback port.

    Args:
        engine_factory: builds the media plane of each call; the real
            ``callbot.server.engine.Engine`` unless a test passes a double.
    """

    def __init__(
        self,
        settings: ServerSettings | None = None,
        clock: Clock | None = None,
        *,
        engine_factory: EngineFactory = default_engine_factory,
    ) -> None:
        self.settings = settings or ServerSettings()
        self.clock: Clock = clock or SystemClock()
        self.pubsub = PubSub(duplicate_pushes=self.settings.duplicate_pushes)
        self.rooms = RoomStore(self.settings.rooms)
        self.received_candidates: list[str] = []
        self.network = NetworkConditionsControl(time.monotonic)
        self.calls = Calls(
            self.settings,
            self.clock,
            self.pubsub,
            self._with_network_conditions(engine_factory),
            received_candidates=self.received_candidates,
        )
        self.router = TopicRouter()
        self.router.route(
            TOPIC_PREFIX, call_channel_factory(self.settings, self.rooms, self.calls)
        )
        self.sensors = SensorRegistry(self.settings, self.clock, self.pubsub)
        self.router.route("sensocto:sensor:", sensor_channel_factory(self.sensors))
        self.router.route(
            "viewer:",
            viewer_channel_factory(self.sensors, lambda: self.settings.delta_encoding),
        )
        self.router.route("room:", room_channel_factory(self.sensors, self.rooms))
        self.port = self.settings.port
        self.admin_port: int | None = None
        self._server: Server | None = None
        self._sockets: set[UserSocket] = set()
        self._admin: _AdminServer | None = None

    @property
    def url(self) -> str:
        """``ws://HOST:PORT/socket``, the client's socket URL."""
        return f"ws://{self.settings.host}:{self.port}/socket"

    @property
    def admin_url(self) -> str | None:
        if self.admin_port is None:
            return None
        return f"http://127.0.0.1:{self.admin_port}"

    async def start(self) -> None:
        allowed_hosts = {self.settings.host, "localhost", "127.0.0.1", "::1"}

        def process_request(
            connection: ServerConnection, request: Request
        ) -> Response | None:
            return check_upgrade(connection, request, allowed_hosts)

        self._server = await serve_websockets(
            self._handle,
            self.settings.host,
            self.settings.port,
            process_request=process_request,
            compression=None,
            ping_interval=None,
            max_size=None,
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        if self.settings.admin_port is not None:
            self._admin = _AdminServer(self, self.settings.admin_port)
            self.admin_port = await self._admin.start()
        logger.info("reference server listening on %s", self.url)

    async def stop(self) -> None:
        if self._admin is not None:
            await self._admin.stop()
            self._admin = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self.calls.close()
        logger.info("reference server stopped")

    async def __aenter__(self) -> ReferenceServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- test control ------------------------------------------------------------

    def call(self, room_id: str) -> CallServer | None:
        return self.calls.get(room_id)

    def call_channels(self, room_id: str, user_id: str) -> list[CallChannel]:
        """The live call channels of one user in one room, on any socket."""
        topic = f"{TOPIC_PREFIX}{room_id}:{user_id}"
        return [s for s in self.pubsub.subscribers(topic) if isinstance(s, CallChannel)]

    async def crash_channel(self, room_id: str, user_id: str) -> None:
        """Kill that user's channel processes: ``phx_error``, then leave_call."""
        channels = self.call_channels(room_id, user_id)
        if not channels:
            raise LookupError(f"no channel of {user_id} in room {room_id}")
        for channel in channels:
            channel.crash()
        for channel in channels:
            await channel.wait_closed()

    async def crash_endpoint(self, room_id: str, user_id: str) -> None:
        """Crash that user's endpoint: ``participant_left {crashed: true}``."""
        call = self.calls.get(room_id)
        endpoint_id = call.endpoint_of(user_id) if call else None
        if call is None or endpoint_id is None:
            raise LookupError(f"{user_id} is not in the call of room {room_id}")
        call.engine.crash_endpoint(endpoint_id, "crashed by test control")

    def set_adaptive_quality(self, room_id: str, enabled: bool) -> None:
        """Sensocto's server-side API; no channel event reaches it."""
        call = self.calls.get(room_id)
        if call is None:
            raise LookupError(f"no call in room {room_id}")
        call.set_adaptive_quality(enabled)

    def _with_network_conditions(self, factory: EngineFactory) -> EngineFactory:
        """``factory`` whose engines impair new subscribers' senders as set."""

        def build(
            room_id: str, settings: ServerSettings, listener: CallServer
        ) -> MediaEngine:
            from callbot.server.engine import Engine

            engine = factory(room_id, settings, listener)
            if isinstance(engine, Engine):
                engine.on_subscribed = self.network.subscriber_hook(room_id)
            return engine

        return build

    def published_tracks(self, room_id: str, user_id: str) -> dict[str, str]:
        """The tracks ``user_id`` publishes in the call: track id -> kind."""
        from callbot.server.engine import Engine

        call = self.calls.get(room_id)
        endpoint_id = call.endpoint_of(user_id) if call else None
        if call is None or endpoint_id is None or not isinstance(call.engine, Engine):
            raise LookupError(f"{user_id} is not in the call of room {room_id}")
        endpoint = call.engine.endpoints.get(endpoint_id)
        if endpoint is None:
            return {}
        return {t: p.kind for t, p in endpoint.publications.items()}

    def set_network_conditions(
        self, room_id: str, track_id: str, conditions: NetworkConditions
    ) -> int:
        """Loss, delay or a pause on one track, for its subscribers now and later.

        Returns how many subscribers it applies to now.
        """
        from callbot.server.engine import Engine

        call = self.calls.get(room_id)
        if call is None or not isinstance(call.engine, Engine):
            raise LookupError(f"no call in room {room_id}")
        if call.engine.publication(track_id) is None:
            raise LookupError(f"no track {track_id} in room {room_id}")
        senders = [
            transceiver.sender
            for endpoint in call.engine.endpoints.values()
            for sent_id, (transceiver, _track) in endpoint.senders.items()
            if sent_id == track_id
        ]
        self.network.apply(room_id, track_id, conditions, senders)
        return len(senders)

    def set_sensor_attention(self, sensor_id: str, level: AttentionLevel) -> None:
        """Viewers' attention on a sensor; its channels get a new config."""
        self.sensors.set_attention(sensor_id, level)

    def set_system_load(self, level: str) -> None:
        """normal / elevated / high / critical, for every sensor."""
        self.sensors.set_system_load(level)

    def set_memory_protection(self, active: bool) -> None:
        self.sensors.set_memory_protection(active)

    def set_delta_encoding(self, enabled: bool) -> None:
        """DELTA_ENCODING_ENABLED; applies to viewer channels joined later."""
        self.settings.delta_encoding = enabled

    def dev_mint_viewer_token(
        self, sensor_ids: list[str], quality: str = "high"
    ) -> str:
        """Development only: a ``viewer:data`` token for these sensors."""
        return self.sensors.dev_mint_viewer_token(sensor_ids, quality)

    def dev_mint_bearer_token(self, user_id: str) -> str:
        """Development only: a sensor channel ``bearer_token``."""
        return self.sensors.dev_mint_bearer_token(user_id)

    def advance_clock(self, ms: int) -> None:
        if not isinstance(self.clock, ManualClock):
            raise TypeError("the server runs on the system clock")
        self.clock.advance(ms)

    # -- websockets --------------------------------------------------------------

    async def _handle(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        params = socket_params(connection.request)
        # The token is accepted and ignored: calls take user_id from join params.
        logger.info(
            "socket connected from %s (vsn %s)",
            connection.remote_address,
            params.serializer.version,
        )
        user_socket = UserSocket(
            connection,
            params.serializer,
            router=self.router,
            pubsub=self.pubsub,
            clock=self.clock,
            strict_join_ref=self.settings.strict_join_ref,
            idle_timeout_ms=self.settings.idle_timeout_ms,
        )
        user_socket.params = params.params
        self._sockets.add(user_socket)
        try:
            await user_socket.run()
        finally:
            self._sockets.discard(user_socket)
            logger.info("socket from %s closed", connection.remote_address)


# -- admin HTTP ------------------------------------------------------------------


class AdvanceBody(BaseModel):
    ms: int


class AdaptiveBody(BaseModel):
    enabled: bool


class LevelBody(BaseModel):
    level: str


class ViewerTokenBody(BaseModel):
    sensor_ids: list[str]
    quality: str = "high"


def admin_app(server: ReferenceServer) -> FastAPI:
    """The test control of :class:`ReferenceServer` over HTTP."""
    app = FastAPI(title="callbot reference server admin")

    def lookup(exc: LookupError) -> HTTPException:
        return HTTPException(status_code=404, detail=str(exc))

    @app.get("/rooms")
    async def rooms() -> dict[str, Any]:
        # The lobby admits everyone without a RoomStore entry; it always exists.
        names = sorted({LOBBY, *server.rooms.names()})
        return {"rooms": names, "calls": server.calls.rooms()}

    @app.get("/rooms/{room_id}/participants")
    async def participants(room_id: str) -> dict[str, Any]:
        call = server.call(room_id)
        return {"participants": call.participants_table() if call else {}}

    @app.post("/clock/advance")
    async def advance(body: AdvanceBody) -> dict[str, Any]:
        try:
            server.advance_clock(body.ms)
        except TypeError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc
        return {"monotonic_ms": server.clock.monotonic_ms()}

    @app.post("/rooms/{room_id}/channels/{user_id}/crash")
    async def crash_channel(room_id: str, user_id: str) -> dict[str, Any]:
        try:
            await server.crash_channel(room_id, user_id)
        except LookupError as exc:
            raise lookup(exc) from exc
        return {"crashed": user_id}

    @app.post("/rooms/{room_id}/endpoints/{user_id}/crash")
    async def crash_endpoint(room_id: str, user_id: str) -> dict[str, Any]:
        try:
            await server.crash_endpoint(room_id, user_id)
        except LookupError as exc:
            raise lookup(exc) from exc
        return {"crashed": user_id}

    @app.post("/rooms/{room_id}/adaptive_quality")
    async def adaptive(room_id: str, body: AdaptiveBody) -> dict[str, Any]:
        try:
            server.set_adaptive_quality(room_id, body.enabled)
        except LookupError as exc:
            raise lookup(exc) from exc
        return {"enabled": body.enabled}

    @app.get("/rooms/{room_id}/users/{user_id}/tracks")
    async def tracks(room_id: str, user_id: str) -> dict[str, Any]:
        try:
            return {"tracks": server.published_tracks(room_id, user_id)}
        except LookupError as exc:
            raise lookup(exc) from exc

    @app.post("/rooms/{room_id}/tracks/{track_id}/network_conditions")
    async def network_conditions(
        room_id: str, track_id: str, body: NetworkConditions
    ) -> dict[str, Any]:
        try:
            subscribers = server.set_network_conditions(room_id, track_id, body)
        except LookupError as exc:
            raise lookup(exc) from exc
        return {"track_id": track_id, "subscribers": subscribers, **body.model_dump()}

    @app.post("/sensors/{sensor_id}/attention")
    async def attention(sensor_id: str, body: LevelBody) -> dict[str, Any]:
        try:
            server.sensors.set_attention(sensor_id, body.level)  # type: ignore[arg-type]
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        return server.sensors.config_for(sensor_id)

    @app.post("/system_load")
    async def system_load(body: LevelBody) -> dict[str, Any]:
        try:
            server.set_system_load(body.level)
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        return {"system_load": body.level}

    @app.post("/memory_protection")
    async def memory_protection(body: AdaptiveBody) -> dict[str, Any]:
        server.set_memory_protection(body.enabled)
        return {"memory_protection_active": body.enabled}

    @app.post("/dev/viewer_tokens")
    async def viewer_token(body: ViewerTokenBody) -> dict[str, Any]:
        try:
            token = server.dev_mint_viewer_token(body.sensor_ids, body.quality)
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        return {"token": token}

    @app.get("/candidates")
    async def candidates() -> dict[str, Any]:
        return {"received_candidates": list(server.received_candidates)}

    return app


class _AdminServer:
    """uvicorn on a loopback socket, without its signal handlers."""

    def __init__(self, server: ReferenceServer, port: int) -> None:
        self._sock = socketlib.socket(socketlib.AF_INET, socketlib.SOCK_STREAM)
        self._sock.setsockopt(socketlib.SOL_SOCKET, socketlib.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        config = uvicorn.Config(admin_app(server), log_level="warning", lifespan="off")
        self._uvicorn = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        port: int = self._sock.getsockname()[1]
        # startup() needs what serve() prepares first; serve() itself would
        # take over the process's signal handlers.
        config = self._uvicorn.config
        if not config.loaded:
            config.load()
        self._uvicorn.lifespan = config.lifespan_class(config)
        await self._uvicorn.startup(sockets=[self._sock])
        self._task = asyncio.get_running_loop().create_task(self._uvicorn.main_loop())
        logger.info("admin HTTP on http://127.0.0.1:%d", port)
        return port

    async def stop(self) -> None:
        self._uvicorn.should_exit = True
        if self._task is not None:
            await self._task
        await self._uvicorn.shutdown(sockets=[self._sock])
        self._sock.close()


async def serve(settings: ServerSettings) -> None:
    """Run a reference server until cancelled (the ``callbot server`` command)."""
    server = ReferenceServer(settings)
    await server.start()
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()
