"""Files: upload, list, retrieve, delete, content. Blobs live under `root`, named by file id.

A blob is written (and checksummed) before its row commits, and removed after its row is
deleted, so a row never points at a missing blob; a crash can at worst leave an orphan blob,
which `sweep_orphans` removes at start. Blob paths never derive from user-given names.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from openai.types import FileDeleted, FileObject
from sqlmodel import col, select

from assistants.clock import Clock
from assistants.errors import InvalidRequest, NotFound
from assistants.ids import new_id
from assistants.pagination import Page, paginate
from assistants.params import ListQuery
from storage import Database, FileRow

__all__ = ["PURPOSES", "FileService", "clean_filename"]

log = logging.getLogger("assistants.files")

#: Purposes a client may upload with; `assistants_output` is the engine's own.
PURPOSES = ("assistants", "vision", "user_data")


def clean_filename(name: str) -> str:
    """A display name: the last path segment, no control characters, at most 255 chars."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip()
    if base in ("", ".", ".."):
        raise InvalidRequest("Invalid 'file': the file needs a name.", param="file")
    return base[:255]


class FileService:
    def __init__(self, *, db: Database, clock: Clock, root: Path, max_bytes: int) -> None:
        self._db, self._clock, self._root, self.max_bytes = db, clock, root, max_bytes

    def path(self, file_id: str) -> Path:
        return self._root / file_id

    async def create(
        self,
        filename: str,
        purpose: str,
        chunks: AsyncIterator[bytes],
        *,
        mimetype: str | None = None,
        source: str | None = None,
        internal: bool = False,
    ) -> FileObject:
        """Stores an upload streamed in `chunks`; refuses it past `max_bytes`."""
        if not internal and purpose not in PURPOSES:
            raise InvalidRequest(
                f"Invalid 'purpose': '{purpose}'. Supported values are: "
                + ", ".join(f"'{p}'" for p in PURPOSES)
                + ".",
                param="purpose",
            )
        name = clean_filename(filename)
        file_id = new_id("file")
        await asyncio.to_thread(self._root.mkdir, parents=True, exist_ok=True)
        target = self.path(file_id)
        partial = target.with_suffix(".part")
        digest = hashlib.sha256()
        size = 0
        handle = await asyncio.to_thread(partial.open, "wb")
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > self.max_bytes:
                    raise InvalidRequest(
                        f"File is too large: the limit is {self.max_bytes // (1024 * 1024)} MB.",
                        param="file",
                    )
                digest.update(chunk)
                await asyncio.to_thread(handle.write, chunk)
            await asyncio.to_thread(_close_synced, handle)
            await asyncio.to_thread(os.replace, partial, target)
            row = FileRow(
                id=file_id,
                created_at=self._clock.now(),
                filename=name,
                purpose=purpose,
                bytes=size,
                sha256=digest.hexdigest(),
                mimetype=mimetype,
                source=source,
            )
            async with self._db.session() as session:
                session.add(row)
        except BaseException:
            handle.close()
            await asyncio.to_thread(_unlink, partial)
            await asyncio.to_thread(_unlink, target)
            raise
        return _wire(row)

    async def create_bytes(
        self,
        filename: str,
        purpose: str,
        data: bytes,
        *,
        mimetype: str | None = None,
        source: str | None = None,
        internal: bool = False,
    ) -> FileObject:
        async def one() -> AsyncIterator[bytes]:
            yield data

        return await self.create(
            filename, purpose, one(), mimetype=mimetype, source=source, internal=internal
        )

    async def retrieve(self, file_id: str) -> FileObject:
        return _wire(await self.row(file_id))

    async def row(self, file_id: str) -> FileRow:
        async with self._db.session() as session:
            found = (await session.exec(select(FileRow).where(col(FileRow.id) == file_id))).first()
        if found is None:
            raise NotFound("file", file_id)
        return found

    async def list(self, query: ListQuery, *, purpose: str | None = None) -> Page[FileObject]:
        filters = [col(FileRow.purpose) == purpose] if purpose else []
        async with self._db.session() as session:
            page = await paginate(session, FileRow, query, filters)
        return Page([_wire(row) for row in page.data], page.has_more)

    async def read(self, file_id: str) -> bytes:
        await self.row(file_id)
        return await asyncio.to_thread(self.path(file_id).read_bytes)

    async def delete(self, file_id: str) -> FileDeleted:
        async with self._db.session() as session:
            row = (await session.exec(select(FileRow).where(col(FileRow.id) == file_id))).first()
            if row is None:
                raise NotFound("file", file_id)
            await session.delete(row)
        await asyncio.to_thread(_unlink, self.path(file_id))
        return FileDeleted(id=file_id, object="file", deleted=True)

    async def sweep_orphans(self, min_age: float = 3600.0) -> int:
        """Removes blobs without a row (left by a crash between write and commit).

        Only blobs older than `min_age` seconds: replicas may share this folder, and a young
        one can be an upload another process is still writing or about to commit.
        """
        if not self._root.exists():
            return 0
        cutoff = time.time() - min_age
        names = await asyncio.to_thread(
            lambda: [p.name for p in self._root.iterdir() if _mtime(p) < cutoff]
        )
        async with self._db.session() as session:
            known = set((await session.exec(select(FileRow.id))).all())
        removed = 0
        for name in names:
            if name.removesuffix(".part") not in known or name.endswith(".part"):
                await asyncio.to_thread(_unlink, self._root / name)
                removed += 1
        return removed


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # removed meanwhile (by another replica's sweep)
        return float("inf")


def _wire(row: FileRow) -> FileObject:
    return FileObject(
        id=row.id,
        object="file",
        bytes=row.bytes,
        created_at=row.created_at,
        filename=row.filename,
        purpose=row.purpose,
        status="processed",
    )


def _close_synced(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
