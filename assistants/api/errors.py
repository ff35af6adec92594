"""The one table from engine errors to HTTP statuses, and OpenAI-shaped error bodies."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from assistants.errors import Conflict, EngineError, InvalidRequest, NotFound, Unavailable

__all__ = ["engine_errors", "error_response"]

log = logging.getLogger("assistants.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STATUS: dict[type[EngineError], int] = {
    EngineError: 500,
    Unavailable: 503,
    InvalidRequest: 400,
    Conflict: 400,  # hosted Assistants answered an active-run clash with 400
    NotFound: 404,
}


def error_response(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> web.Response:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return web.json_response(body, status=status)


@web.middleware
async def engine_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except EngineError as exc:
        status = next(_STATUS[c] for c in type(exc).__mro__ if c in _STATUS)
        return web.json_response({"error": exc.as_dict()}, status=status)
    except web.HTTPException as exc:
        if exc.status == 404:
            return error_response(404, f"Invalid URL ({request.method} {request.path})")
        if exc.status == 405:
            response = error_response(
                405, f"Invalid method for URL ({request.method} {request.path})"
            )
            if "Allow" in exc.headers:  # HTTP requires it on a 405: the methods the URL takes
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        return error_response(exc.status, exc.reason)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(
            500, "The server had an error while processing your request.", type="server_error"
        )
