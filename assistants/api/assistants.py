"""`/v1/assistants` routes."""

from __future__ import annotations

from aiohttp import web

from assistants.api._http import body, engine, json_response, list_query, page_response
from assistants.params import AssistantCreate, AssistantUpdate

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.post("/assistants")
async def create(request: web.Request) -> web.Response:
    params = await body(request, AssistantCreate)
    return json_response(await engine(request).assistants.create(params))


@routes.get("/assistants")
async def list_(request: web.Request) -> web.Response:
    return page_response(await engine(request).assistants.list(list_query(request)))


@routes.get("/assistants/{assistant_id}")
async def retrieve(request: web.Request) -> web.Response:
    assistant_id = request.match_info["assistant_id"]
    return json_response(await engine(request).assistants.retrieve(assistant_id))


@routes.post("/assistants/{assistant_id}")
async def update(request: web.Request) -> web.Response:
    params = await body(request, AssistantUpdate)
    assistant_id = request.match_info["assistant_id"]
    return json_response(await engine(request).assistants.update(assistant_id, params))


@routes.delete("/assistants/{assistant_id}")
async def delete(request: web.Request) -> web.Response:
    assistant_id = request.match_info["assistant_id"]
    return json_response(await engine(request).assistants.delete(assistant_id))
