"""`/v1/threads/{thread_id}/runs` (+ steps, cancel, submit_tool_outputs) and `/v1/threads/runs`."""

from __future__ import annotations

from aiohttp import web

from assistants.api._http import (
    body,
    engine,
    include,
    json_response,
    list_query,
    page_response,
    sse,
)
from assistants.params import MetadataUpdate, RunCreate, SubmitToolOutputs, ThreadAndRunCreate

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.post("/threads/runs")
async def create_thread_and_run(request: web.Request) -> web.StreamResponse:
    params = await body(request, ThreadAndRunCreate)
    runs = engine(request).runs
    if params.stream:
        return await sse(request, await runs.create_thread_and_run_stream(params))
    return json_response(await runs.create_thread_and_run(params), poll=True, request=request)


@routes.post("/threads/{thread_id}/runs")
async def create(request: web.Request) -> web.StreamResponse:
    params = await body(request, RunCreate)
    thread_id = request.match_info["thread_id"]
    runs = engine(request).runs
    if params.stream:
        return await sse(request, await runs.create_stream(thread_id, params))
    return json_response(await runs.create(thread_id, params), poll=True, request=request)


@routes.get("/threads/{thread_id}/runs")
async def list_(request: web.Request) -> web.Response:
    thread_id = request.match_info["thread_id"]
    return page_response(await engine(request).runs.list(thread_id, list_query(request)))


@routes.get("/threads/{thread_id}/runs/{run_id}")
async def retrieve(request: web.Request) -> web.Response:
    thread_id, run_id = request.match_info["thread_id"], request.match_info["run_id"]
    run = await engine(request).runs.retrieve(thread_id, run_id)
    return json_response(run, poll=True, request=request)


@routes.post("/threads/{thread_id}/runs/{run_id}")
async def update(request: web.Request) -> web.Response:
    params = await body(request, MetadataUpdate)
    thread_id, run_id = request.match_info["thread_id"], request.match_info["run_id"]
    return json_response(await engine(request).runs.update(thread_id, run_id, params))


@routes.post("/threads/{thread_id}/runs/{run_id}/cancel")
async def cancel(request: web.Request) -> web.Response:
    thread_id, run_id = request.match_info["thread_id"], request.match_info["run_id"]
    run = await engine(request).runs.cancel(thread_id, run_id)
    return json_response(run, poll=True, request=request)


@routes.post("/threads/{thread_id}/runs/{run_id}/submit_tool_outputs")
async def submit_tool_outputs(request: web.Request) -> web.StreamResponse:
    params = await body(request, SubmitToolOutputs)
    thread_id, run_id = request.match_info["thread_id"], request.match_info["run_id"]
    runs = engine(request).runs
    if params.stream:
        return await sse(request, await runs.submit_tool_outputs_stream(thread_id, run_id, params))
    run = await runs.submit_tool_outputs(thread_id, run_id, params)
    return json_response(run, poll=True, request=request)


@routes.get("/threads/{thread_id}/runs/{run_id}/steps")
async def list_steps(request: web.Request) -> web.Response:
    thread_id, run_id = request.match_info["thread_id"], request.match_info["run_id"]
    page = await engine(request).runs.list_steps(
        thread_id, run_id, list_query(request), include(request)
    )
    return page_response(page)


@routes.get("/threads/{thread_id}/runs/{run_id}/steps/{step_id}")
async def retrieve_step(request: web.Request) -> web.Response:
    thread_id, run_id = request.match_info["thread_id"], request.match_info["run_id"]
    step_id = request.match_info["step_id"]
    step = await engine(request).runs.retrieve_step(thread_id, run_id, step_id, include(request))
    return json_response(step)
