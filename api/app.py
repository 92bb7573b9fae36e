"""The control plane's REST app: create, watch and remove bots."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from api import requestid
from api.botlog import BotLog
from api.bus import EventBus
from api.hostpaths import FilesRootMiddleware
from api.keys import check_key
from api.launcher import Launcher, LaunchError, LocalProcessLauncher
from api.leaverules import LeaveRules, LeaveWatch
from api.metrics import Metrics
from api.models import (
    TERMINAL_STATUSES,
    AttentionChange,
    Bot,
    BotCreated,
    BotList,
    CreateBot,
    DeliveryLog,
    ErrorBody,
    Event,
    EventPage,
    Health,
    LogLines,
    WebhookDelivery,
)
from api.record import BotRecord, RecordEvent
from api.requestbody import RequestBodyMiddleware
from api.settings import LOOPBACK_HOSTS, ControlPlaneSettings
from api.store import IdempotencyConflict, Store
from api.webhooks import WebhookSender

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    415: "unsupported_media_type",
}

# An idle SSE stream sends a comment this often, so proxies keep it open.
SSE_KEEPALIVE = 15.0
# How often the leave rules are looked at.
RULES_INTERVAL = 0.5

bearer = HTTPBearer(auto_error=False, description="An API key: cb_...")


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message", "retryable", ...}}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retryable = retryable
        self.headers = headers


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    retryable: bool = False,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {
        "error": {
            "code": code,
            "message": message,
            "retryable": retryable,
            "request_id": requestid.current.get(),
        }
    }
    return JSONResponse(status_code=status, content=body, headers=headers)


def _body_error(status: int, code: str, message: str) -> JSONResponse:
    return error_response(status, code, message)


def shown(value: str, limit: int = 64) -> str:
    """A client's value as an error message may quote it: never too long."""
    return value if len(value) <= limit else value[:limit] + "..."


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(shown(str(p)) for p in error.get("loc", ()) if p != "body")
        message = shown(str(error.get("msg", "invalid")), 200)
        parts.append(f"{where}: {message}" if where else message)
    return shown("; ".join(parts[:10]), 2000) or "invalid request"


def attention_refused(bot_id: str, status: str) -> str:
    """Why a bot that left, failed or is leaving takes no attention change."""
    state = {"left": "has left", "failed": "has failed"}.get(status, "is leaving")
    return f"bot {shown(bot_id)} {state}; its attention can no longer be changed"


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


def _event_view(event: RecordEvent) -> Event:
    return Event(
        event_id=event.event_id,
        seq=event.seq or 0,
        bot_id=event.bot_id,
        type=event.type,
        data=event.data,
        ts=event.ts,
    )


def _sse(event: RecordEvent) -> bytes:
    data = _event_view(event).model_dump_json()
    return f"id: {event.seq}\nevent: {event.type}\ndata: {data}\n\n".encode()


def _request_hash(body: CreateBot) -> str:
    canonical = json.dumps(
        body.model_dump(mode="json"), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _webhook_secret(settings: ControlPlaneSettings) -> str:
    """The configured secret, or one kept in the data directory."""
    if settings.webhook_secret:
        return settings.webhook_secret
    path = Path(settings.data_dir) / "webhook-secret"
    with contextlib.suppress(FileNotFoundError):
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    return secret


def _host_allowed(url: str, allowed: list[str]) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in {h.lower().strip("[]") for h in allowed}


def create_app(
    launcher: Launcher | None = None,
    *,
    store: Store | None = None,
    own_store: bool = False,
    settings: ControlPlaneSettings | None = None,
    max_bots: int | None = None,
    ice_addresses: list[str] | None = None,
    keep_bots_on_shutdown: bool | None = None,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
    webhook_base_delay: float = 1.0,
    load: Callable[[], float] | None = None,
    clock: Clock = time.time,
) -> FastAPI:
    """Build the control-plane app around a launcher (local processes by default).

    Args:
        store: where bots, events and keys are kept; an in-memory SQLite
            database when None (nothing survives the process).
        own_store: close the store when the app shuts down.
        settings: limits, allow-lists, webhooks; the defaults when None. The
            keyword arguments below win over it.
        max_bots: how many bots may be running (not yet left or failed) at once.
        ice_addresses: the addresses every bot's ICE may use; the bot's
            default (loopback) when None.
        keep_bots_on_shutdown: on shutdown, leave the bots running for the
            next control plane instead of making them leave.
        webhook_base_delay: seconds before the first webhook retry; doubled
            on each further one.
        load: the host's load per core (admission control); os.getloadavg
            divided by the cores when None.
    """
    # Without settings, the bots use their own default ICE addresses.
    ice = ice_addresses
    if ice is None and settings is not None:
        ice = settings.ice_addresses
    settings = settings if settings is not None else ControlPlaneSettings()
    launcher = launcher if launcher is not None else LocalProcessLauncher()
    limit = max_bots if max_bots is not None else settings.max_bots
    keep = (
        keep_bots_on_shutdown
        if keep_bots_on_shutdown is not None
        else settings.keep_bots_on_shutdown
    )
    own_store = own_store or store is None
    db = store if store is not None else Store("sqlite://")
    db.webhook_urls = list(settings.webhook_urls)
    for url in db.webhook_urls:
        if not _host_allowed(url, settings.webhook_hosts):
            raise ValueError(f"webhook {url}: host not in webhook_hosts")
    host_load = load if load is not None else _load_per_core

    bots: dict[str, BotRecord] = {}
    # Bots whose launcher.start is under way: a replay of their POST waits
    # for the outcome (None, or why the launch failed).
    launching: dict[str, asyncio.Future[str | None]] = {}
    watches: dict[str, LeaveWatch] = {}
    bus = EventBus()
    metrics = Metrics()
    listeners: list[Callable[[list[RecordEvent]], None]] = [bus.publish]
    state: dict[str, Any] = {"draining": False, "sender": None}
    requestid.install_log_field()

    def publish(events: list[RecordEvent]) -> None:
        if not events:
            return
        for listener in listeners:
            listener(events)
        sender = state["sender"]
        if sender is not None:
            sender.notify()

    def persist(record: BotRecord) -> None:
        if record.bot_id in bots:
            metrics.follow(record)
            publish(db.save(record))

    launcher.on_change = persist

    async def apply_leave_rules() -> None:
        while True:
            await asyncio.sleep(RULES_INTERVAL)
            now = clock()
            for bot_id, watch in list(watches.items()):
                record = bots.get(bot_id)
                if record is None or record.terminal or record.leave_requested:
                    watches.pop(bot_id, None)
                    continue
                reason = watch.check(record, now)
                if reason is not None:
                    BotLog(logger, bot_id, record.user_id, record.room_id).info(
                        "leaves by its leave rule: %s", reason
                    )
                    record.request_leave(now, reason)
                    await launcher.leave(record)
                    persist(record)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["draining"] = False
        # Bots of an earlier control plane: keep their records, follow the
        # running ones again.
        loaded = [r for r in db.load_bots() if r.bot_id not in bots]
        metrics.seen(loaded)
        for record in loaded:
            bots[record.bot_id] = record
            if not record.terminal:
                if record.leave_rules:
                    watches[record.bot_id] = LeaveWatch(
                        LeaveRules(**record.leave_rules)
                    )
                await launcher.reattach(record)
        running = sum(1 for r in bots.values() if not r.terminal)
        if running:
            logger.info("following %d running bots of an earlier run", running)
        await launcher.open()
        sender = WebhookSender(
            db,
            _webhook_secret(settings),
            retry_window=settings.webhook_retry_window,
            base_delay=webhook_base_delay,
            transport=webhook_transport,
            clock=clock,
        )
        sender.start()
        state["sender"] = sender
        rules_task = asyncio.create_task(apply_leave_rules(), name="leave-rules")
        try:
            yield
        finally:
            state["draining"] = True
            bus.close()
            rules_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rules_task
            if keep:
                logger.info("shutting down: the bots keep running")
                await launcher.detach()
            else:
                logger.info("shutting down: every bot leaves")
                await launcher.close()
            # The last status events go out before the sender stops.
            await sender.close()
            state["sender"] = None
            if own_store:
                db.close()

    app = FastAPI(
        title="callbot control plane",
        version="0.2.0",
        description=(
            "Start headless call bots in Sensocto calls and watch them. Every"
            " route but /health/* and /metrics needs `Authorization: Bearer"
            " <key>` (`callbot keys create`)."
        ),
        lifespan=lifespan,
    )
    # Added first, so it runs inside the request id middleware.
    app.add_middleware(
        RequestBodyMiddleware, error=_body_error, limit=settings.max_body_bytes
    )
    app.add_middleware(requestid.RequestIdMiddleware)
    # Plugin paths given over REST are confined to this app's files root.
    app.add_middleware(FilesRootMiddleware, root=settings.resolved_files_dir())
    app.state.bots = bots
    app.state.launcher = launcher
    app.state.store = db
    app.state.bus = bus
    app.state.metrics = metrics
    app.state.event_listeners = listeners
    app.state.control = state

    def drain() -> None:
        """Stop taking bots and end the event streams (SIGTERM)."""
        state["draining"] = True
        bus.close()

    app.state.drain = drain

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(
            exc.status,
            exc.code,
            exc.message,
            retryable=exc.retryable,
            headers=exc.headers,
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
        headers = dict(exc.headers) if exc.headers else {}
        if exc.status_code == 405:
            # Starlette names only the first route of the path; list them all.
            headers["Allow"] = ", ".join(_allowed_methods(app, request))
        return error_response(
            exc.status_code,
            code,
            str(exc.detail),
            retryable=exc.status_code >= 500,
            headers=headers or None,
        )

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error")
        return error_response(500, "internal", "internal error", retryable=True)

    def authenticate(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> str:
        challenge = {"WWW-Authenticate": "Bearer"}
        if credentials is None:
            raise ApiError(
                401, "unauthorized", "an API key is required", headers=challenge
            )
        key_id = check_key(db, credentials.credentials)
        if key_id is None:
            raise ApiError(
                401, "unauthorized", "the API key is not valid", headers=challenge
            )
        # The key that made a request scopes its Idempotency-Key.
        request.state.api_key_id = key_id
        return key_id

    unauthorized = _error("The API key is missing or not valid.")
    router = APIRouter(
        dependencies=[Depends(authenticate)], responses={401: unauthorized}
    )

    def find(bot_id: str) -> BotRecord:
        record = bots.get(bot_id)
        if record is None:
            raise ApiError(404, "bot_not_found", f"no bot with id {shown(bot_id)}")
        return record

    def refuse(status: int, code: str, message: str, **kw: Any) -> ApiError:
        metrics.rejected[code] += 1
        return ApiError(status, code, message, **kw)

    body_errors: dict[int | str, dict[str, Any]] = {
        400: _error(
            "The body is not UTF-8 JSON (`invalid_json`; NaN and Infinity are"
            " not JSON)."
        ),
        413: _error("The body is larger than the limit (1 MiB by default)."),
    }

    @router.post(
        "/bots",
        status_code=201,
        response_model=BotCreated,
        tags=["bots"],
        summary="Start a bot in a call",
        description=(
            "With an `Idempotency-Key` header, the same key and body give the"
            " same bot again; the same key with another body is a 409."
        ),
        responses={
            **body_errors,
            409: _error("The Idempotency-Key was used with another body."),
            422: _error(
                "The body is invalid (server_url must be ws/wss on an allowed host)."
            ),
            503: _error("Full, draining or the bot could not start; see Retry-After."),
        },
    )
    async def create_bot(
        request: Request,
        body: CreateBot,
        response: Response,
        idempotency_key: Annotated[
            str | None,
            Header(
                min_length=1,
                max_length=255,
                description=(
                    "Makes retries of this POST safe; per API key (two keys"
                    " never share a bot)."
                ),
            ),
        ] = None,
    ) -> BotCreated:
        request_hash = _request_hash(body)
        api_key_id: str = request.state.api_key_id
        # Idempotency-Keys are per API key. Known limit: they never expire, and
        # bots made before revision 0002 belong to no key (a retry spanning the
        # upgrade makes a new bot).
        if idempotency_key is not None:
            found = db.find_idempotent(idempotency_key, api_key_id=api_key_id)
            if found is not None:
                return await replay(found, request_hash, response)

        if not _host_allowed(body.server_url, settings.server_hosts):
            raise refuse(
                422, "host_not_allowed", "server_url: host is not on the allow-list"
            )
        if (
            body.sensors is not None
            and body.sensors.server_url is not None
            and not _host_allowed(body.sensors.server_url, settings.server_hosts)
        ):
            raise refuse(
                422,
                "host_not_allowed",
                "sensors.server_url: host is not on the allow-list",
            )
        if body.webhook_url is not None and not _host_allowed(
            body.webhook_url, settings.webhook_hosts
        ):
            raise refuse(
                422, "host_not_allowed", "webhook_url: host is not on the allow-list"
            )
        retry = {"Retry-After": "5"}
        if state["draining"]:
            raise refuse(
                503,
                "draining",
                "the control plane is shutting down",
                retryable=True,
                headers=retry,
            )
        running = sum(1 for r in bots.values() if not r.terminal)
        if running >= limit:
            raise refuse(
                503,
                "too_many_bots",
                f"{running} bots are running, the limit is {limit}",
                retryable=True,
                headers=retry,
            )
        if settings.max_load is not None and host_load() > settings.max_load:
            raise refuse(
                503,
                "host_busy",
                "the host's CPU load is too high",
                retryable=True,
                headers=retry,
            )
        if not launcher.ready:
            raise refuse(
                503,
                "not_ready",
                "the launcher cannot start bots",
                retryable=True,
                headers=retry,
            )

        bot_id = "b-" + secrets.token_hex(4)
        while bot_id in bots:
            bot_id = "b-" + secrets.token_hex(4)
        options: dict[str, Any] = body.adaptive_options()
        if body.plugins:
            options["plugins"] = [p.model_dump() for p in body.plugins]
        if body.max_duration is not None:
            # The bot leaves by itself too; the control plane's rule backs it up.
            options["duration"] = body.max_duration
        rules = LeaveRules(
            max_duration=body.max_duration,
            alone_timeout=body.alone_timeout,
            nobody_joined_timeout=body.nobody_joined_timeout,
        )
        record = BotRecord(
            bot_id,
            server_url=body.server_url,
            room_id=body.room_id,
            user_id=body.user_id or "bot-" + secrets.token_hex(3),
            display_name=body.display_name,
            now=clock(),
            ice_addresses=ice,
            webhook_url=body.webhook_url,
            options=options or None,
        )
        if rules != LeaveRules():
            record.leave_rules = dataclasses.asdict(rules)
        try:
            first_events = db.add_bot(
                record,
                api_key_id=api_key_id,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
            )
        except IdempotencyConflict:
            # Another request of this API key with this Idempotency-Key won the race.
            found = db.find_idempotent(idempotency_key or "", api_key_id=api_key_id)
            if found is None:
                raise
            return await replay(found, request_hash, response)
        bots[bot_id] = record
        outcome: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        launching[bot_id] = outcome
        try:
            await launcher.start(record)
        except LaunchError as exc:
            del bots[bot_id]
            db.delete_bot(bot_id)
            outcome.set_result(str(exc))
            raise refuse(
                503, "launch_failed", str(exc), retryable=True, headers=retry
            ) from exc
        finally:
            if not outcome.done():
                outcome.set_result(None)
            launching.pop(bot_id, None)
        metrics.starts += 1
        if rules != LeaveRules():
            watches[bot_id] = LeaveWatch(rules)
        publish(first_events)
        persist(record)
        BotLog(logger, bot_id, record.user_id, record.room_id).info(
            "starting in room %s as %s", record.room_id, record.user_id
        )
        response.headers["Location"] = f"/bots/{bot_id}"
        return BotCreated(id=bot_id, status=record.status)

    async def replay(
        found: tuple[str, str | None], request_hash: str, response: Response
    ) -> BotCreated:
        bot_id, stored_hash = found
        if stored_hash != request_hash:
            raise ApiError(
                409,
                "idempotency_conflict",
                "this Idempotency-Key was used with another body",
            )
        pending = launching.get(bot_id)
        if pending is not None:
            # The first request is still launching this bot: answer as it will.
            failure = await asyncio.shield(pending)
            if failure is not None:
                raise refuse(
                    503,
                    "launch_failed",
                    failure,
                    retryable=True,
                    headers={"Retry-After": "5"},
                )
        record = find(bot_id)
        response.headers["Location"] = f"/bots/{bot_id}"
        response.headers["Idempotent-Replayed"] = "true"
        return BotCreated(id=bot_id, status=record.status)

    @router.get("/bots", response_model=BotList, tags=["bots"], summary="List bots")
    async def list_bots() -> BotList:
        return BotList(bots=[r.view() for r in bots.values()])

    bot_errors: dict[int | str, dict[str, Any]] = {
        404: _error("No bot with this id."),
        422: _error("The request is invalid."),
    }

    @router.get(
        "/bots/{bot_id}",
        response_model=Bot,
        tags=["bots"],
        summary="A bot's status, history and media counters",
        responses=bot_errors,
    )
    async def get_bot(bot_id: str) -> Bot:
        return find(bot_id).view()

    @router.delete(
        "/bots/{bot_id}",
        status_code=202,
        response_model=Bot,
        tags=["bots"],
        summary="Make a bot leave its call",
        description="The bot leaves; its status goes leaving → left.",
        responses=bot_errors,
    )
    async def delete_bot(bot_id: str) -> Bot:
        record = find(bot_id)
        if not record.terminal:
            await launcher.leave(record)
            persist(record)
        return record.view()

    @router.post(
        "/bots/{bot_id}/attention",
        status_code=202,
        response_model=Bot,
        tags=["bots"],
        summary="Change a bot's attention level while it runs",
        description=(
            "The bot's tier and video follow at once; its next stats report"
            " confirms the level in `attention`."
        ),
        responses={
            **bot_errors,
            **body_errors,
            409: _error("The bot has already left or failed (`bot_ended`)."),
            503: _error("The bot's worker cannot be reached (`bot_unreachable`)."),
        },
    )
    async def set_attention(bot_id: str, body: AttentionChange) -> Bot:
        record = find(bot_id)
        if record.terminal or record.leave_requested:
            raise ApiError(409, "bot_ended", attention_refused(bot_id, record.status))
        if not await launcher.set_attention(record, body.level):
            raise ApiError(
                503,
                "bot_unreachable",
                "the bot's worker cannot be reached",
                retryable=True,
            )
        record.attention = body.level
        return record.view()

    @router.get(
        "/bots/{bot_id}/logs",
        response_model=LogLines,
        tags=["bots"],
        summary="The last lines the bot's worker logged",
        responses=bot_errors,
    )
    async def get_logs(
        bot_id: str, lines: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> LogLines:
        record = find(bot_id)
        return LogLines(bot_id=bot_id, lines=await launcher.read_logs(record, lines))

    @router.get(
        "/bots/{bot_id}/events",
        response_model=EventPage,
        tags=["events"],
        summary="A bot's events, oldest first, a page at a time",
        responses=bot_errors,
    )
    async def get_events(
        bot_id: str,
        after: Annotated[int, Query(ge=0, description="Events after this seq.")] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> EventPage:
        find(bot_id)
        events = db.events(bot_id=bot_id, after=after, limit=limit)
        return EventPage(
            events=[_event_view(e) for e in events],
            next_after=events[-1].seq if len(events) == limit else None,
        )

    @router.get(
        "/bots/{bot_id}/webhooks",
        response_model=DeliveryLog,
        tags=["events"],
        summary="The webhook delivery log of a bot's events",
        responses=bot_errors,
    )
    async def get_deliveries(bot_id: str) -> DeliveryLog:
        find(bot_id)
        return DeliveryLog(
            deliveries=[WebhookDelivery(**d) for d in db.deliveries(bot_id)]
        )

    def stream(
        request: Request, bot_id: str | None, after: int | None
    ) -> StreamingResponse:
        last_id = request.headers.get("last-event-id")
        if after is None and last_id is not None and last_id.isdigit():
            after = int(last_id)
        subscription = bus.subscribe(bot_id)

        def final(event: RecordEvent) -> bool:
            # A bot's own stream ends with its last status; the global one
            # goes on.
            return (
                bot_id is not None
                and event.type == "status"
                and event.data.get("status") in TERMINAL_STATUSES
            )

        async def body() -> AsyncIterator[bytes]:
            try:
                sent = 0
                if after is not None:
                    # Stored events first; the subscription holds what comes
                    # meanwhile, and duplicates are skipped by seq.
                    sent = after
                    while True:
                        page = db.events(bot_id=bot_id, after=sent, limit=500)
                        for stored in page:
                            yield _sse(stored)
                            sent = stored.seq or sent
                            if final(stored):
                                return
                        if len(page) < 500:
                            break
                yield b": stream open\n\n"
                if bot_id is not None and bots[bot_id].terminal:
                    # Its final status went out before this stream opened.
                    return
                while True:
                    # asyncio.timeout, not wait_for, so that a closed client's
                    # cancel is never swallowed (Python 3.11).
                    try:
                        async with asyncio.timeout(SSE_KEEPALIVE):
                            event = await subscription.get()
                    except TimeoutError:
                        yield b": keepalive\n\n"
                        continue
                    if event is None:
                        return
                    if event.seq is not None and event.seq <= sent:
                        continue
                    yield _sse(event)
                    if final(event):
                        return
            finally:
                subscription.close()

        return StreamingResponse(
            body(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    sse_doc = {
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
        "description": (
            "Server-Sent Events: `id` is the event's seq, `event` its type,"
            " `data` the event as JSON."
        ),
    }

    @router.get(
        "/bots/{bot_id}/events/stream",
        tags=["events"],
        summary="A bot's events as Server-Sent Events",
        description=(
            "From now on, or after `after` / `Last-Event-ID`. The stream ends"
            " once the bot's final status event (`left` or `failed`) has been"
            " sent; opened on a bot that has already ended, it ends at once"
            " (with `after`, after replaying the stored events up to that"
            " final status)."
        ),
        response_class=StreamingResponse,
        responses={200: sse_doc, **bot_errors},
    )
    async def stream_bot_events(
        request: Request,
        bot_id: str,
        after: Annotated[int | None, Query(ge=0)] = None,
    ) -> StreamingResponse:
        find(bot_id)
        return stream(request, bot_id, after)

    @router.get(
        "/events/stream",
        tags=["events"],
        summary="Every bot's events as Server-Sent Events",
        response_class=StreamingResponse,
        responses={200: sse_doc, 422: _error("The request is invalid.")},
    )
    async def stream_all_events(
        request: Request, after: Annotated[int | None, Query(ge=0)] = None
    ) -> StreamingResponse:
        return stream(request, None, after)

    app.include_router(router)

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
        if state["draining"]:
            raise ApiError(
                503, "draining", "the control plane is shutting down", retryable=True
            )
        if not launcher.ready:
            raise ApiError(
                503, "not_ready", "the launcher cannot start bots", retryable=True
            )
        return Health(status="ready")

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=PlainTextResponse,
        summary="Prometheus metrics",
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def get_metrics() -> PlainTextResponse:
        text = metrics.render(
            bots.values(), draining=state["draining"], warm=launcher.warm_pool
        )
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    return app


def _allowed_methods(app: FastAPI, request: Request) -> list[str]:
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        route_methods = getattr(route, "methods", None)
        if match != Match.NONE and route_methods:
            methods.update(route_methods)
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def _load_per_core() -> float:
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        return 0.0


__all__ = ["LOOPBACK_HOSTS", "ApiError", "create_app", "error_response"]
