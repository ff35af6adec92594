"""The HTTP side of `run` and `serve`: Slack events, health, metrics and the `/v1` REST API."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from assistants.api import api_app
from bot.runtime import Runtime

__all__ = ["RUNTIME", "SLACK", "SlackSlot", "http_app"]

log = logging.getLogger("bot.server")

RUNTIME = web.AppKey("runtime", Runtime)


@dataclass
class SlackSlot:
    """Filled once the bot has started (it needs the database and the synced assistants)."""

    bot: object | None = None  # bot.app.Bot; typed loosely so `serve` never imports Slack code
    options: object | None = None


SLACK = web.AppKey("slack", SlackSlot)


def http_app(
    runtime: Runtime, *, slack: bool = False, reply_options: object | None = None
) -> web.Application:
    """Health and metrics always; `/slack/events` with `slack`; `/v1` when a key is set.

    `reply_options` (a `bot.conversations.ReplyOptions`) tunes reply pacing, for tests.
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
    return app


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME]
    await runtime.start()
    yield
    await runtime.close()


async def _slack_lifetime(app: web.Application) -> AsyncIterator[None]:
    from bot.app import Bot
    from bot.conversations import ReplyOptions

    runtime = app[RUNTIME]
    options = app[SLACK].options
    bot = await Bot.start(runtime, options=options if isinstance(options, ReplyOptions) else None)
    app[SLACK].bot = bot
    socket = None
    app_token = runtime.settings.slack_app_token
    if app_token is not None:
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        socket = AsyncSocketModeHandler(bot.app, app_token.get_secret_value())
        await socket.connect_async()
        log.info("connected to Slack in Socket Mode")
    yield
    if socket is not None:
        await socket.close_async()
    await bot.close()


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
    return web.json_response({"status": "ok"})


async def _metrics(_request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
