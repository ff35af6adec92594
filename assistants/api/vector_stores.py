"""`/v1/vector_stores` routes: stores, their files, file batches, search."""

from __future__ import annotations

from aiohttp import web

from assistants.api._http import body, engine, json_response, list_query, page_response
from assistants.params import ListQuery
from assistants.vector_store_params import (
    FileBatchCreate,
    VectorStoreCreate,
    VectorStoreFileCreate,
    VectorStoreSearch,
    VectorStoreUpdate,
)

__all__ = ["routes"]

routes = web.RouteTableDef()


def _vs(request: web.Request) -> str:
    return request.match_info["vector_store_id"]


def _vs_and(request: web.Request, name: str) -> tuple[str, str]:
    return request.match_info["vector_store_id"], request.match_info[name]


@routes.post("/vector_stores")
async def create(request: web.Request) -> web.Response:
    params = await body(request, VectorStoreCreate)
    return json_response(await engine(request).vector_stores.create(params))


@routes.get("/vector_stores")
async def list_(request: web.Request) -> web.Response:
    return page_response(await engine(request).vector_stores.list(list_query(request)))


@routes.get("/vector_stores/{vector_store_id}")
async def retrieve(request: web.Request) -> web.Response:
    return json_response(await engine(request).vector_stores.retrieve(_vs(request)))


@routes.post("/vector_stores/{vector_store_id}")
async def update(request: web.Request) -> web.Response:
    params = await body(request, VectorStoreUpdate)
    return json_response(await engine(request).vector_stores.update(_vs(request), params))


@routes.delete("/vector_stores/{vector_store_id}")
async def delete(request: web.Request) -> web.Response:
    return json_response(await engine(request).vector_stores.delete(_vs(request)))


@routes.post("/vector_stores/{vector_store_id}/search")
async def search(request: web.Request) -> web.Response:
    params = await body(request, VectorStoreSearch)
    return web.json_response(await engine(request).vector_stores.search(_vs(request), params))


@routes.post("/vector_stores/{vector_store_id}/files")
async def add_file(request: web.Request) -> web.Response:
    params = await body(request, VectorStoreFileCreate)
    stores = engine(request).vector_stores
    return json_response(await stores.add_file(_vs(request), params), poll=True, request=request)


@routes.get("/vector_stores/{vector_store_id}/files")
async def list_files(request: web.Request) -> web.Response:
    page = await engine(request).vector_stores.list_files(
        _vs(request), list_query(request), status=request.query.get("filter")
    )
    return page_response(page)


@routes.get("/vector_stores/{vector_store_id}/files/{file_id}")
async def retrieve_file(request: web.Request) -> web.Response:
    stored = await engine(request).vector_stores.retrieve_file(*_vs_and(request, "file_id"))
    return json_response(stored, poll=True, request=request)


@routes.delete("/vector_stores/{vector_store_id}/files/{file_id}")
async def delete_file(request: web.Request) -> web.Response:
    return json_response(
        await engine(request).vector_stores.delete_file(*_vs_and(request, "file_id"))
    )


@routes.get("/vector_stores/{vector_store_id}/files/{file_id}/content")
async def file_content(request: web.Request) -> web.Response:
    parts = await engine(request).vector_stores.file_content(*_vs_and(request, "file_id"))
    return web.json_response(
        {
            "object": "vector_store.file_content.page",
            "data": list(parts),
            "has_more": False,
            "next_page": None,
        }
    )


@routes.post("/vector_stores/{vector_store_id}/file_batches")
async def create_batch(request: web.Request) -> web.Response:
    params = await body(request, FileBatchCreate)
    stores = engine(request).vector_stores
    batch = await stores.create_batch(_vs(request), params)
    return json_response(batch, poll=True, request=request)


@routes.get("/vector_stores/{vector_store_id}/file_batches/{batch_id}")
async def retrieve_batch(request: web.Request) -> web.Response:
    batch = await engine(request).vector_stores.retrieve_batch(*_vs_and(request, "batch_id"))
    return json_response(batch, poll=True, request=request)


@routes.post("/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel")
async def cancel_batch(request: web.Request) -> web.Response:
    batch = await engine(request).vector_stores.cancel_batch(*_vs_and(request, "batch_id"))
    return json_response(batch)


@routes.get("/vector_stores/{vector_store_id}/file_batches/{batch_id}/files")
async def list_batch_files(request: web.Request) -> web.Response:
    vector_store_id, batch_id = _vs_and(request, "batch_id")
    query: ListQuery = list_query(request)
    page = await engine(request).vector_stores.list_files(
        vector_store_id, query, status=request.query.get("filter"), batch_id=batch_id
    )
    return page_response(page)
