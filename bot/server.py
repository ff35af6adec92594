"""The HTTP side shared by `run` and `serve`: health, metrics and the `/v1` REST API."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from assistants.api import api_app
from bot.runtime import Runtime

__all__ = ["RUNTIME", "http_app"]

RUNTIME = web.AppKey("runtime", Runtime)


def http_app(runtime: Runtime) -> web.Application:
    """Routes for health and metrics, plus `/v1` when `ASSISTANTS_API_KEY` is set."""
    app = web.Application()
    app[RUNTIME] = runtime
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    api_key = runtime.settings.assistants_api_key
    if api_key is not None and api_key.get_secret_value():
        app.add_subapp("/v1", api_app(runtime.engine, api_key=api_key.get_secret_value()))
    app.cleanup_ctx.append(_lifetime)
    return app


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME]
    await runtime.start()
    yield
    await runtime.close()


async def _healthz(request: web.Request) -> web.Response:
    try:
        await request.app[RUNTIME].db.ping()
    except Exception as exc:  # any database failure means "not healthy", with the reason
        return web.json_response({"status": "error", "database": type(exc).__name__}, status=503)
    return web.json_response({"status": "ok"})


async def _metrics(_request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
