"""The HTTP side of `run` and `serve`: Slack events, health, metrics and the `/v1` REST API."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest

from assistants import api_app
from bot.runtime import Runtime

__all__ = ["RUNTIME", "SLACK", "SlackSlot", "StartupError", "http_app"]

log = logging.getLogger("bot.server")

RUNTIME = web.AppKey("runtime", Runtime)
#: Python's default collects the youngest generation every 700 allocations: with 1,000 runs
#: streaming, the objects of the deltas in flight were caught alive that often, promoted, and
#: then forced full collections of the whole live heap (32 in one run of the memory bench,
#: 0.3-0.7 s each; 125 s of collecting in all). Every 10,000, they are mostly gone by then:
#: no full collection, ~3 s in all, and a lower peak RSS (`bench.load` memory scenario).
_GC_THRESHOLDS = (10_000, 10, 10)
GC_PAUSE_SECONDS = Histogram(
    "slack_assistants_gc_pause_seconds",
    "Garbage collections of this process (the event loop waits them out), by generation",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)


class StartupError(Exception):
    """The bot cannot start as configured; the message says what to fix."""


@dataclass
class SlackSlot:
    """Filled once the bot has started (it needs the database and the synced assistants)."""

    bot: object | None = None  # bot.app.Bot; typed loosely so `serve` never imports Slack code
    options: object | None = None
    socket: Any = None  # the Socket Mode handler, when connected that way


SLACK = web.AppKey("slack", SlackSlot)


def http_app(
    runtime: Runtime,
    *,
    slack: bool = False,
    reply_options: object | None = None,
    owns_process: bool = False,
) -> web.Application:
    """Health and metrics always; `/slack/events` with `slack`; `/v1` when a key is set.

    `reply_options` (a `bot.conversations.ReplyOptions`) tunes reply pacing, for tests.
    `owns_process`: the app is the process (`run`, `serve`): once started, it freezes its heap
    and times the garbage collector's pauses (`_settle_process`). Not in tests, where the
    process outlives many apps and would keep each one's objects for good.
    """
    app = web.Application()
    app[RUNTIME] = runtime
    app[SLACK] = SlackSlot(options=reply_options)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    api_key = runtime.settings.assistants_api_key
    if api_key is not None and api_key.get_secret_value():
        app.add_subapp("/v1", api_app(runtime.engine, api_key=api_key.get_secret_value()))
    app.cleanup_ctx.append(_lifetime)
    if slack:
        app.router.add_post("/slack/events", _slack_events)
        app.cleanup_ctx.append(_slack_lifetime)
    if owns_process:
        app.on_startup.append(_settle_process)  # after the start-ups added above
    return app


async def _settle_process(_app: web.Application) -> None:
    """Moves what start-up built (modules, SDK types, the engine: ~255,000 objects) out of
    the garbage collector's reach. They live as long as the process, yet Python's collection of
    its oldest generation walked them all every time: a 150-240 ms stall of the event loop that
    every ack and stream write waiting behind it paid (5-55 ms once frozen). Then the youngest
    generation is collected every 10,000 allocations instead of 700 (`_GC_THRESHOLDS`). From
    here on each pause is timed into `slack_assistants_gc_pause_seconds`."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)
    gc.callbacks.append(_GcTimer().callback)


class _GcTimer:
    """Times each collection: the event loop stands still while it runs."""

    def __init__(self) -> None:
        self._started = 0.0

    def callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            pause = time.perf_counter() - self._started
            GC_PAUSE_SECONDS.labels(generation=str(info["generation"])).observe(pause)


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME]
    await runtime.start()
    yield
    await runtime.drain()
    await runtime.close()


async def _slack_lifetime(app: web.Application) -> AsyncIterator[None]:
    from bot.app import Bot
    from bot.conversations import ReplyOptions

    runtime = app[RUNTIME]
    options = app[SLACK].options
    bot = await Bot.start(runtime, options=options if isinstance(options, ReplyOptions) else None)
    app[SLACK].bot = bot
    app_token = runtime.settings.slack_app_token
    socket = None
    try:
        if app_token is not None:
            socket = await _connect_socket(bot, app_token.get_secret_value())
            app[SLACK].socket = socket
        yield
    finally:
        if socket is not None:
            await socket.close_async()
        await bot.close()


async def _connect_socket(bot: Any, app_token: str) -> Any:
    """Socket Mode, after one explicit `apps.connections.open`: the client would retry a bad
    token forever, leaving a process that never listens; a clear error is better."""
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
    from slack_sdk.errors import SlackApiError

    try:
        async with asyncio.timeout(30):
            await bot.client.apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        raise StartupError(
            f"Slack refused SLACK_APP_TOKEN ({exc.response.get('error')}): use the app-level "
            "token (xapp-...) with the connections:write scope, see README.md."
        ) from exc
    except (TimeoutError, OSError) as exc:
        raise StartupError(f"cannot reach Slack to open Socket Mode: {exc!r}") from exc
    socket = AsyncSocketModeHandler(bot.app, app_token)
    await socket.connect_async()
    log.info("connected to Slack in Socket Mode")
    return socket


async def _slack_events(request: web.Request) -> web.StreamResponse:
    from bot.app import Bot

    bot = request.app[SLACK].bot
    if not isinstance(bot, Bot):
        return web.json_response({"error": "starting"}, status=503)
    return await bot.dispatch(request)


async def _healthz(request: web.Request) -> web.Response:
    try:
        await request.app[RUNTIME].db.ping()
    except Exception as exc:  # any database failure means "not healthy", with the reason
        return web.json_response({"status": "error", "database": type(exc).__name__}, status=503)
    socket = request.app[SLACK].socket
    if socket is not None and not await socket.client.is_connected():
        return web.json_response({"status": "error", "slack": "socket disconnected"}, status=503)
    return web.json_response({"status": "ok"})


async def _metrics(_request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
