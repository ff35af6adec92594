"""The Assistants v2 REST API over the engine: aiohttp routes, mounted under `/v1`."""

from __future__ import annotations

from aiohttp import web

from assistants.api import assistants, files, runs, threads, vector_stores
from assistants.api._http import ENGINE, POLL_AFTER_MS, unstorable_ids
from assistants.api.auth import bearer_auth
from assistants.api.errors import engine_errors
from assistants.engine import Engine

__all__ = ["api_app"]


def api_app(engine: Engine, *, api_key: str, poll_after_ms: int = 50) -> web.Application:
    """The `/v1` sub-application; mount it with `app.add_subapp("/v1", api_app(...))`."""
    app = web.Application(
        middlewares=[engine_errors, bearer_auth(api_key), unstorable_ids],
        client_max_size=1024**3,  # uploads stream to disk; FileService enforces the real limit
    )
    app[ENGINE] = engine
    app[POLL_AFTER_MS] = poll_after_ms
    # runs first: `/threads/runs` must win over `/threads/{thread_id}`.
    app.add_routes(runs.routes)
    app.add_routes(assistants.routes)
    app.add_routes(threads.routes)
    app.add_routes(files.routes)
    app.add_routes(vector_stores.routes)
    return app
