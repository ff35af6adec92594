"""Request parsing and response writing shared by the route modules."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel

from assistants.engine import Engine
from assistants.errors import NotFound
from assistants.events import DONE_SSE, StreamEvent
from assistants.pagination import Page
from assistants.params import ListQuery, parse, storable

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
    "unstorable_ids",
]

ENGINE = web.AppKey("engine", Engine)
POLL_AFTER_MS = web.AppKey("poll_after_ms", int)

Model = TypeVar("Model", bound=BaseModel)


# The object each path parameter names, as `NotFound` words it.
_PATH_KINDS = {
    "assistant_id": "assistant",
    "thread_id": "thread",
    "message_id": "message",
    "run_id": "run",
    "step_id": "run step",
    "file_id": "file",
    "vector_store_id": "vector store",
    "batch_id": "file batch",
}


@web.middleware
async def unstorable_ids(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An id no database can hold (a NUL in it) names nothing: 404 before any query, which
    PostgreSQL would refuse with an error (a 500)."""
    for name, value in request.match_info.items():
        if name in _PATH_KINDS and not storable(value):
            raise NotFound(_PATH_KINDS[name], value)
    return await handler(request)


def engine(request: web.Request) -> Engine:
    return request.config_dict[ENGINE]


async def body(request: web.Request, model: type[Model]) -> Model:
    raw = await request.read()
    try:
        data = json.loads(raw, parse_constant=_not_json) if raw.strip() else {}
    except (ValueError, RecursionError):
        data = None  # parse() answers with OpenAI's "could not parse the JSON body" text
    return parse(model, data)


def _not_json(constant: str) -> Any:
    # Python reads NaN and Infinity; JSON has neither, and PostgreSQL's json refuses them.
    raise ValueError(f"{constant} is not JSON")


def list_query(request: web.Request) -> ListQuery:
    query = {
        k: request.query[k] for k in ("limit", "order", "after", "before") if k in request.query
    }
    return parse(ListQuery, query)


def include(request: web.Request) -> list[str]:
    return request.query.getall("include[]", []) + request.query.getall("include", [])


def _wire_json(model: BaseModel) -> str:
    # Only the fields the engine set: the SDK types default every optional field to None,
    # which hosted Assistants omitted and the spec often forbids (`tools[].function.description`
    # is a string, `tool_resources.file_search` an object).
    return model.model_dump_json(exclude_unset=True)


def _sse_event(event: StreamEvent) -> bytes:
    data = event.data
    body = _wire_json(data) if isinstance(data, BaseModel) else json.dumps(data)
    return f"event: {event.event}\ndata: {body}\n\n".encode()


def json_response(
    model: BaseModel, *, poll: bool = False, request: web.Request | None = None
) -> web.Response:
    response = web.Response(text=_wire_json(model), content_type="application/json")
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
            await response.write(_sse_event(event))
        await response.write(DONE_SSE)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away; the run goes on and stays retrievable
    return response
