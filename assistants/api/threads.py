"""`/v1/threads` and `/v1/threads/{thread_id}/messages` routes."""

from __future__ import annotations

from aiohttp import web

from assistants.api._http import body, engine, json_response, list_query, page_response
from assistants.params import (
    MessageCreate,
    MessageUpdate,
    ThreadCreate,
    ThreadUpdate,
    storable,
)

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.post("/threads")
async def create(request: web.Request) -> web.Response:
    params = await body(request, ThreadCreate)
    return json_response(await engine(request).threads.create(params))


@routes.get("/threads/{thread_id}")
async def retrieve(request: web.Request) -> web.Response:
    return json_response(await engine(request).threads.retrieve(request.match_info["thread_id"]))


@routes.post("/threads/{thread_id}")
async def update(request: web.Request) -> web.Response:
    params = await body(request, ThreadUpdate)
    thread_id = request.match_info["thread_id"]
    return json_response(await engine(request).threads.update(thread_id, params))


@routes.delete("/threads/{thread_id}")
async def delete(request: web.Request) -> web.Response:
    return json_response(await engine(request).threads.delete(request.match_info["thread_id"]))


@routes.post("/threads/{thread_id}/messages")
async def create_message(request: web.Request) -> web.Response:
    params = await body(request, MessageCreate)
    thread_id = request.match_info["thread_id"]
    return json_response(await engine(request).messages.create(thread_id, params))


@routes.get("/threads/{thread_id}/messages")
async def list_messages(request: web.Request) -> web.Response:
    thread_id = request.match_info["thread_id"]
    run_id = request.query.get("run_id")
    if run_id is not None and not storable(run_id):
        run_id = ""  # no run has such an id; PostgreSQL would refuse the NUL in a query
    page = await engine(request).messages.list(thread_id, list_query(request), run_id=run_id)
    return page_response(page)


@routes.get("/threads/{thread_id}/messages/{message_id}")
async def retrieve_message(request: web.Request) -> web.Response:
    thread_id, message_id = request.match_info["thread_id"], request.match_info["message_id"]
    return json_response(await engine(request).messages.retrieve(thread_id, message_id))


@routes.post("/threads/{thread_id}/messages/{message_id}")
async def update_message(request: web.Request) -> web.Response:
    params = await body(request, MessageUpdate)
    thread_id, message_id = request.match_info["thread_id"], request.match_info["message_id"]
    return json_response(await engine(request).messages.update(thread_id, message_id, params))


@routes.delete("/threads/{thread_id}/messages/{message_id}")
async def delete_message(request: web.Request) -> web.Response:
    thread_id, message_id = request.match_info["thread_id"], request.match_info["message_id"]
    return json_response(await engine(request).messages.delete(thread_id, message_id))
