"""`/v1/files` routes: multipart upload streamed to disk, list, retrieve, delete, content."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator

from aiohttp import BodyPartReader, web

from assistants.api._http import engine, json_response, list_query, page_response
from assistants.errors import InvalidRequest

__all__ = ["routes"]

routes = web.RouteTableDef()

_CHUNK = 256 * 1024


@routes.post("/files")
async def create(request: web.Request) -> web.Response:
    if not request.content_type.startswith("multipart/"):
        raise InvalidRequest(
            "Expected a multipart/form-data body with 'file' and 'purpose'.", param="file"
        )
    files = engine(request).files
    reader = await request.multipart()
    purpose: str | None = None
    spooled: tempfile.SpooledTemporaryFile[bytes] | None = None
    filename = mimetype = None
    created = None
    async for part in reader:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "purpose":
            purpose = (await part.text()).strip()
        elif part.name == "file":
            filename, mimetype = part.filename or "", part.headers.get("Content-Type")
            if purpose is not None:  # the usual order (the SDK sends fields first): stream
                created = await files.create(filename, purpose, _chunks(part), mimetype=mimetype)
            else:
                spooled = await _spool(part, files.max_bytes)
        else:
            raise InvalidRequest(f"Unrecognized request argument supplied: {part.name}")
    if created is not None:
        return json_response(created)
    if spooled is None or filename is None:
        raise InvalidRequest("Missing required parameter: 'file'.", param="file")
    if purpose is None:
        raise InvalidRequest("Missing required parameter: 'purpose'.", param="purpose")
    with spooled:
        spooled.seek(0)
        created = await files.create(filename, purpose, _read(spooled), mimetype=mimetype)
    return json_response(created)


@routes.get("/files")
async def list_(request: web.Request) -> web.Response:
    purpose = request.query.get("purpose")
    return page_response(await engine(request).files.list(list_query(request), purpose=purpose))


@routes.get("/files/{file_id}")
async def retrieve(request: web.Request) -> web.Response:
    return json_response(await engine(request).files.retrieve(request.match_info["file_id"]))


@routes.delete("/files/{file_id}")
async def delete(request: web.Request) -> web.Response:
    return json_response(await engine(request).files.delete(request.match_info["file_id"]))


@routes.get("/files/{file_id}/content")
async def content(request: web.Request) -> web.StreamResponse:
    files = engine(request).files
    row = await files.row(request.match_info["file_id"])
    return web.FileResponse(
        files.path(row.id),
        headers={
            "Content-Type": row.mimetype or "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{_quoted(row.filename)}"',
        },
    )


async def _chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(_CHUNK):
        yield chunk


async def _spool(part: BodyPartReader, limit: int) -> tempfile.SpooledTemporaryFile[bytes]:
    spooled: tempfile.SpooledTemporaryFile[bytes] = tempfile.SpooledTemporaryFile(8 * 1024 * 1024)
    size = 0
    async for chunk in _chunks(part):
        size += len(chunk)
        if size > limit:
            spooled.close()
            raise InvalidRequest(
                f"File is too large: the limit is {limit // (1024 * 1024)} MB.", param="file"
            )
        spooled.write(chunk)
    return spooled


async def _read(spooled: tempfile.SpooledTemporaryFile[bytes]) -> AsyncIterator[bytes]:
    while chunk := spooled.read(_CHUNK):
        yield chunk


def _quoted(name: str) -> str:
    return name.replace("\\", "_").replace('"', "_")
