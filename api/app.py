"""The control plane's REST app: create, watch and remove bots."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.launcher import Launcher, LaunchError, LocalProcessLauncher
from api.models import Bot, BotCreated, BotList, CreateBot, ErrorBody, Health
from api.record import BotRecord, RecordEvent
from api.store import Store

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message", "retryable"}}``."""

    def __init__(
        self, status: int, code: str, message: str, *, retryable: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retryable = retryable


def error_response(
    status: int, code: str, message: str, *, retryable: bool = False
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "retryable": retryable}}
    return JSONResponse(status_code=status, content=body)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        message = str(error.get("msg", "invalid"))
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts) or "invalid request"


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


def create_app(
    launcher: Launcher | None = None,
    *,
    store: Store | None = None,
    own_store: bool = False,
    max_bots: int = 50,
    ice_addresses: list[str] | None = None,
    keep_bots_on_shutdown: bool = False,
    clock: Clock = time.time,
) -> FastAPI:
    """Build the control-plane app around a launcher (local processes by default).

    Args:
        store: where bots and events are kept; an in-memory SQLite database
            when None (nothing survives the process).
        own_store: close the store when the app shuts down.
        max_bots: how many bots may be running (not yet left or failed) at once.
        ice_addresses: the addresses every bot's ICE may use; the bot's
            default (loopback) when None.
        keep_bots_on_shutdown: on shutdown, leave the bots running for the
            next control plane instead of making them leave.
    """
    launcher = launcher if launcher is not None else LocalProcessLauncher()
    own_store = own_store or store is None
    db = store if store is not None else Store("sqlite://")
    bots: dict[str, BotRecord] = {}
    listeners: list[Callable[[list[RecordEvent]], None]] = []

    def publish(events: list[RecordEvent]) -> None:
        if events:
            for listener in listeners:
                listener(events)

    def persist(record: BotRecord) -> None:
        if record.bot_id in bots:
            publish(db.save(record))

    launcher.on_change = persist

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Bots of an earlier control plane: keep their records, follow the
        # running ones again.
        for record in db.load_bots():
            bots[record.bot_id] = record
            if not record.terminal:
                await launcher.reattach(record)
        running = sum(1 for r in bots.values() if not r.terminal)
        if running:
            logger.info("following %d running bots of an earlier run", running)
        try:
            yield
        finally:
            if keep_bots_on_shutdown:
                logger.info("shutting down: the bots keep running")
                await launcher.detach()
            else:
                logger.info("shutting down: every bot leaves")
                await launcher.close()
            if own_store:
                db.close()

    app = FastAPI(
        title="callbot control plane",
        version="0.1.0",
        description="Start headless call bots in Sensocto calls and watch them.",
        lifespan=lifespan,
    )
    app.state.bots = bots
    app.state.launcher = launcher
    app.state.store = db
    app.state.event_listeners = listeners

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(
            exc.status, exc.code, exc.message, retryable=exc.retryable
        )

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(
        request: Request, exc: RequestValidationError
    ) -> JSONResponse:
        return error_response(422, "validation", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(
        request: Request, exc: StarletteHTTPException
    ) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        return error_response(
            exc.status_code, code, str(exc.detail), retryable=exc.status_code >= 500
        )

    def find(bot_id: str) -> BotRecord:
        record = bots.get(bot_id)
        if record is None:
            raise ApiError(404, "bot_not_found", f"no bot with id {bot_id}")
        return record

    @app.post(
        "/bots",
        status_code=201,
        response_model=BotCreated,
        tags=["bots"],
        summary="Start a bot in a call",
        responses={
            422: _error("The body is invalid (server_url must be ws/wss)."),
            503: _error("The bot could not be started; try again later."),
        },
    )
    async def create_bot(body: CreateBot, response: Response) -> BotCreated:
        running = sum(1 for r in bots.values() if not r.terminal)
        if running >= max_bots:
            raise ApiError(
                503,
                "too_many_bots",
                f"{running} bots are running, the limit is {max_bots}",
                retryable=True,
            )
        if not launcher.ready:
            raise ApiError(
                503, "not_ready", "the launcher cannot start bots", retryable=True
            )

        bot_id = "b-" + secrets.token_hex(4)
        while bot_id in bots:
            bot_id = "b-" + secrets.token_hex(4)
        record = BotRecord(
            bot_id,
            server_url=body.server_url,
            room_id=body.room_id,
            user_id=body.user_id or "bot-" + secrets.token_hex(3),
            display_name=body.display_name,
            now=clock(),
            ice_addresses=ice_addresses,
            options=(
                {"plugins": [p.model_dump() for p in body.plugins]}
                if body.plugins
                else None
            ),
        )
        bots[bot_id] = record
        first_events = db.add_bot(record)
        try:
            await launcher.start(record)
        except LaunchError as exc:
            del bots[bot_id]
            db.delete_bot(bot_id)
            raise ApiError(503, "launch_failed", str(exc), retryable=True) from exc
        publish(first_events)
        persist(record)
        logger.info(
            "bot %s starting in room %s as %s",
            bot_id,
            record.room_id,
            record.user_id,
            extra={"bot_id": bot_id, "room_id": record.room_id},
        )
        response.headers["Location"] = f"/bots/{bot_id}"
        return BotCreated(id=bot_id, status=record.status)

    @app.get("/bots", response_model=BotList, tags=["bots"], summary="List bots")
    async def list_bots() -> BotList:
        return BotList(bots=[r.view() for r in bots.values()])

    @app.get(
        "/bots/{bot_id}",
        response_model=Bot,
        tags=["bots"],
        summary="A bot's status and media counters",
        responses={
            404: _error("No bot with this id."),
            422: _error("The request is invalid."),
        },
    )
    async def get_bot(bot_id: str) -> Bot:
        return find(bot_id).view()

    @app.delete(
        "/bots/{bot_id}",
        status_code=202,
        response_model=Bot,
        tags=["bots"],
        summary="Make a bot leave its call",
        description="The bot leaves; its status goes leaving → left.",
        responses={
            404: _error("No bot with this id."),
            422: _error("The request is invalid."),
        },
    )
    async def delete_bot(bot_id: str) -> Bot:
        record = find(bot_id)
        if not record.terminal:
            await launcher.leave(record)
            persist(record)
        return record.view()

    @app.get("/health/live", response_model=Health, tags=["health"])
    async def live() -> Health:
        return Health(status="live")

    @app.get(
        "/health/ready",
        response_model=Health,
        tags=["health"],
        responses={503: _error("The control plane cannot start bots now.")},
    )
    async def ready() -> Health:
        if not launcher.ready:
            raise ApiError(
                503, "not_ready", "the launcher cannot start bots", retryable=True
            )
        return Health(status="ready")

    return app
