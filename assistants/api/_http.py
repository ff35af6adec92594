"""Request parsing and response writing shared by the route modules."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from assistants.engine import Engine
from assistants.events import DONE_SSE, StreamEvent
from assistants.pagination import Page
from assistants.params import ListQuery, parse

__all__ = [
    "ENGINE",
    "POLL_AFTER_MS",
    "body",
    "engine",
    "include",
    "json_response",
    "list_query",
    "page_response",
    "sse",
]

ENGINE = web.AppKey("engine", Engine)
POLL_AFTER_MS = web.AppKey("poll_after_ms", int)

Model = TypeVar("Model", bound=BaseModel)


def engine(request: web.Request) -> Engine:
    return request.config_dict[ENGINE]


async def body(request: web.Request, model: type[Model]) -> Model:
    raw = await request.read()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError:
        data = None  # parse() answers with OpenAI's "could not parse the JSON body" text
    return parse(model, data)


def list_query(request: web.Request) -> ListQuery:
    query = {
        k: request.query[k] for k in ("limit", "order", "after", "before") if k in request.query
    }
    return parse(ListQuery, query)


def include(request: web.Request) -> list[str]:
    return request.query.getall("include[]", []) + request.query.getall("include", [])


def json_response(
    model: BaseModel, *, poll: bool = False, request: web.Request | None = None
) -> web.Response:
    response = web.Response(text=model.model_dump_json(), content_type="application/json")
    if poll and request is not None:
        # The SDK's *_and_poll helpers wait this long between polls instead of a full second.
        response.headers["openai-poll-after-ms"] = str(request.config_dict[POLL_AFTER_MS])
    return response


def page_response(page: Page[Any]) -> web.Response:
    return web.json_response(page.as_wire())


async def sse(request: web.Request, events: AsyncIterator[StreamEvent]) -> web.StreamResponse:
    """Writes run events as server-sent events, closing with `done` / `[DONE]`."""
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    try:
        async for event in events:
            await response.write(event.sse())
        await response.write(DONE_SSE)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away; the run goes on and stays retrievable
    return response
