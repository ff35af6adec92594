"""Vector stores, their files and file batches; ingestion in the background; search.

Attaching a file creates its row `in_progress` at once and returns; a background task
extracts, chunks and indexes it (CPU work in threads, never on the event loop) and ends the row
`completed`, or `failed` with a `last_error` the user can act on. One bad file never affects
the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from openai.types import VectorStore, VectorStoreDeleted, VectorStoreSearchResponse
from openai.types.vector_stores import (
    VectorStoreFile,
    VectorStoreFileBatch,
    VectorStoreFileDeleted,
)
from sqlalchemy import Connection
from sqlmodel import col, or_, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from assistants.clock import Clock
from assistants.errors import InvalidRequest, NotFound
from assistants.files import FileService
from assistants.ids import new_id
from assistants.leases import Lease
from assistants.pagination import Page, paginate
from assistants.params import ListQuery
from assistants.retrieval import (
    ChunkIndex,
    Hit,
    InvalidFile,
    UnsupportedFile,
    chunk_pages,
    extract_text,
)
from assistants.vector_store_params import (
    FileBatchCreate,
    VectorStoreCreate,
    VectorStoreFileCreate,
    VectorStoreSearch,
    VectorStoreUpdate,
)
from storage import Database, FileBatchRow, VectorStoreFileRow, VectorStoreRow

__all__ = ["AUTO_CHUNKING", "VectorStoreService"]

log = logging.getLogger("assistants.vector_stores")

AUTO_CHUNKING = {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}
_DAY = 86_400


class VectorStoreService:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        files: FileService,
        index: ChunkIndex,
        lease: Lease,
        steady: Callable[[], bool] = lambda: True,
        concurrency: int = 2,
    ) -> None:
        self._db, self._clock, self._files, self.index = db, clock, files, index
        self._lease, self._steady = lease, steady
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._mine: set[int] = set()  # rows (seq) this process indexes or will index
        self._held: tuple[int, ...] = ()  # `_mine`, replaced whole: the heartbeat reads it
        self._idle = asyncio.Event()
        self._idle.set()

    # -- stores -------------------------------------------------------------------------

    async def create(
        self, params: VectorStoreCreate, *, thread_id: str | None = None
    ) -> VectorStore:
        now = self._clock.now()
        row = VectorStoreRow(
            id=new_id("vector_store"),
            created_at=now,
            name=params.name or "",
            meta=params.metadata or {},
            expires_after=_dump(params.expires_after),
            last_active_at=now,
            thread_id=thread_id,
        )
        row.expires_at = _expires_at(row)
        strategy = _strategy(params.chunking_strategy)
        async with self._db.session() as session:
            session.add(row)
            await self._check_files(params.file_ids)
            attached = [self._new_file_row(row.id, f, strategy) for f in params.file_ids]
            for file_row in attached:
                session.add(file_row)
        self._ingest_later(attached)
        return await self.retrieve(row.id)

    async def retrieve(self, vector_store_id: str) -> VectorStore:
        async with self._db.session() as session:
            row = await _store(session, vector_store_id)
            counts = await _counts(session, [col(VectorStoreFileRow.vector_store_id) == row.id])
        return _store_wire(row, counts)

    async def list(self, query: ListQuery) -> Page[VectorStore]:
        async with self._db.session() as session:
            page = await paginate(session, VectorStoreRow, query)
            stores = []
            for row in page.data:
                filters = [col(VectorStoreFileRow.vector_store_id) == row.id]
                stores.append(_store_wire(row, await _counts(session, filters)))
        return Page(stores, page.has_more)

    async def update(self, vector_store_id: str, params: VectorStoreUpdate) -> VectorStore:
        async with self._db.session() as session:
            row = await _store(session, vector_store_id)
            if "name" in params.model_fields_set:
                row.name = params.name or ""
            if "metadata" in params.model_fields_set:
                row.meta = params.metadata or {}
            if "expires_after" in params.model_fields_set:
                row.expires_after = _dump(params.expires_after)
                row.expires_at = _expires_at(row)
            session.add(row)
        return await self.retrieve(vector_store_id)

    async def delete(self, vector_store_id: str) -> VectorStoreDeleted:
        async with self._db.session() as session:
            row = await _store(session, vector_store_id)
            for file_row in (await session.exec(_files_of(vector_store_id))).all():
                await session.delete(file_row)
            await session.delete(row)
        await self.index.remove_store(vector_store_id)
        return VectorStoreDeleted(id=vector_store_id, object="vector_store.deleted", deleted=True)

    # -- files --------------------------------------------------------------------------

    async def add_file(
        self, vector_store_id: str, params: VectorStoreFileCreate
    ) -> VectorStoreFile:
        await self._check_files([params.file_id])
        async with self._db.session() as session:
            await _store(session, vector_store_id)
            existing = (
                await session.exec(
                    _files_of(vector_store_id).where(
                        col(VectorStoreFileRow.file_id) == params.file_id
                    )
                )
            ).first()
            if existing is not None:
                return _file_wire(existing)
            row = self._new_file_row(
                vector_store_id,
                params.file_id,
                _strategy(params.chunking_strategy),
                attributes=params.attributes,
            )
            session.add(row)
        self._ingest_later([row])
        return _file_wire(row)

    async def retrieve_file(self, vector_store_id: str, file_id: str) -> VectorStoreFile:
        async with self._db.session() as session:
            return _file_wire(await _store_file(session, vector_store_id, file_id))

    async def list_files(
        self,
        vector_store_id: str,
        query: ListQuery,
        *,
        status: str | None = None,
        batch_id: str | None = None,
    ) -> Page[VectorStoreFile]:
        filters = [col(VectorStoreFileRow.vector_store_id) == vector_store_id]
        if status:
            filters.append(col(VectorStoreFileRow.status) == status)
        if batch_id:
            filters.append(col(VectorStoreFileRow.batch_id) == batch_id)
        async with self._db.session() as session:
            await _store(session, vector_store_id)
            page = await paginate(
                session, VectorStoreFileRow, query, filters, id_column=VectorStoreFileRow.file_id
            )
        return Page([_file_wire(row) for row in page.data], page.has_more)

    async def delete_file(self, vector_store_id: str, file_id: str) -> VectorStoreFileDeleted:
        async with self._db.session() as session:
            row = await _store_file(session, vector_store_id, file_id)
            await session.delete(row)
        await self.index.remove_file(vector_store_id, file_id)
        return VectorStoreFileDeleted(id=file_id, object="vector_store.file.deleted", deleted=True)

    async def file_content(self, vector_store_id: str, file_id: str) -> Sequence[dict[str, str]]:
        async with self._db.session() as session:
            await _store_file(session, vector_store_id, file_id)
        chunks = await self.index.file_chunks(vector_store_id, file_id)
        return [{"type": "text", "text": text} for text in chunks]

    # -- batches ------------------------------------------------------------------------

    async def create_batch(
        self, vector_store_id: str, params: FileBatchCreate
    ) -> VectorStoreFileBatch:
        requests = list(params.files or []) + [
            VectorStoreFileCreate(
                file_id=file_id,
                chunking_strategy=params.chunking_strategy,
                attributes=params.attributes,
            )
            for file_id in params.file_ids or []
        ]
        await self._check_files([r.file_id for r in requests])
        batch = FileBatchRow(
            id=new_id("call").replace("call_", "vsfb_"),
            vector_store_id=vector_store_id,
            created_at=self._clock.now(),
        )
        added = []
        async with self._db.session() as session:
            await _store(session, vector_store_id)
            session.add(batch)
            known = set(
                (
                    await session.exec(
                        select(VectorStoreFileRow.file_id).where(
                            col(VectorStoreFileRow.vector_store_id) == vector_store_id
                        )
                    )
                ).all()
            )
            for request in requests:
                if request.file_id in known:
                    continue
                known.add(request.file_id)
                row = self._new_file_row(
                    vector_store_id,
                    request.file_id,
                    _strategy(request.chunking_strategy or params.chunking_strategy),
                    attributes=request.attributes,
                )
                row.batch_id = batch.id
                session.add(row)
                added.append(row)
        self._ingest_later(added)
        return await self.retrieve_batch(vector_store_id, batch.id)

    async def retrieve_batch(self, vector_store_id: str, batch_id: str) -> VectorStoreFileBatch:
        async with self._db.session() as session:
            batch = await _batch(session, vector_store_id, batch_id)
            counts = await _counts(session, [col(VectorStoreFileRow.batch_id) == batch_id])
        return _batch_wire(batch, counts)

    async def cancel_batch(self, vector_store_id: str, batch_id: str) -> VectorStoreFileBatch:
        async with self._db.session() as session:
            batch = await _batch(session, vector_store_id, batch_id)
            batch.cancelled = True
            session.add(batch)
            pending = (
                await session.exec(
                    select(VectorStoreFileRow).where(
                        col(VectorStoreFileRow.batch_id) == batch_id,
                        col(VectorStoreFileRow.status) == "in_progress",
                    )
                )
            ).all()
            for row in pending:
                row.status = "cancelled"
                session.add(row)
        return await self.retrieve_batch(vector_store_id, batch_id)

    # -- search -------------------------------------------------------------------------

    async def search(self, vector_store_id: str, params: VectorStoreSearch) -> dict[str, Any]:
        """The `vector_store.search_results.page` (the SDK types only its items)."""
        await self.touch([vector_store_id])
        queries = [params.query] if isinstance(params.query, str) else params.query
        threshold = params.ranking_options.score_threshold if params.ranking_options else 0.0
        hits = await self.search_stores(
            [vector_store_id], " ".join(queries), params.max_num_results, threshold
        )
        return {
            "object": "vector_store.search_results.page",
            "search_query": queries,
            "data": [_hit_wire(hit).model_dump(mode="json") for hit in hits],
            "has_more": False,
            "next_page": None,
        }

    async def search_stores(
        self, vector_store_ids: Sequence[str], query: str, max_results: int, threshold: float
    ) -> Sequence[Hit]:
        return await self.index.search(
            [*vector_store_ids], query, max_results=max_results, score_threshold=threshold
        )

    async def touch(self, vector_store_ids: Sequence[str]) -> None:
        """Use moves `last_active_at`, and with it an `expires_after` deadline."""
        now = self._clock.now()
        async with self._db.session() as session:
            rows = (
                await session.exec(
                    select(VectorStoreRow).where(col(VectorStoreRow.id).in_(vector_store_ids))
                )
            ).all()
            for row in rows:
                if row.expired:
                    raise InvalidRequest(f"Vector store {row.id} has expired.")
                row.last_active_at = now
                row.expires_at = _expires_at(row)
                session.add(row)

    async def expire_due(self) -> int:
        now = self._clock.now()
        async with self._db.session() as session:
            due = (
                await session.exec(
                    select(VectorStoreRow).where(
                        col(VectorStoreRow.expired).is_(False),
                        col(VectorStoreRow.expires_at).is_not(None),
                        col(VectorStoreRow.expires_at) <= now,
                    )
                )
            ).all()
            for row in due:
                row.expired = True
                session.add(row)
        for row in due:
            await self.index.remove_store(row.id)
        return len(due)

    # -- ingestion ----------------------------------------------------------------------

    async def take_over(self) -> None:
        """Indexes the files whose indexing process stopped (a crash, a replica that died):
        still `in_progress`, with a lease nobody renews."""
        if not self._steady():
            return  # the database was away: give the holders time to renew first
        now = self._lease.now()
        async with self._db.session() as session:
            rows = (
                await session.exec(
                    select(VectorStoreFileRow).where(
                        col(VectorStoreFileRow.status) == "in_progress",
                        or_(
                            col(VectorStoreFileRow.lease_expires_at).is_(None),
                            col(VectorStoreFileRow.lease_expires_at) < now,
                        ),
                    )
                )
            ).all()
        self._ingest_later([row for row in rows if row.seq not in self._mine])

    def renew_leases(self, connection: Connection, until: float) -> None:
        """The heartbeat's renewal (its own thread): the files this process indexes."""
        if self._held:
            connection.execute(self._lease.renewal(VectorStoreFileRow.seq, self._held, until))

    async def _claim(self, row: VectorStoreFileRow) -> bool:
        """Makes this process the file's indexer, unless a live one already is."""
        now = self._lease.now()
        async with self._db.session() as session:
            result = await session.exec(
                update(VectorStoreFileRow)
                .where(
                    col(VectorStoreFileRow.seq) == row.seq,
                    col(VectorStoreFileRow.status) == "in_progress",
                    or_(
                        col(VectorStoreFileRow.worker_id) == self._lease.worker_id,
                        col(VectorStoreFileRow.worker_id).is_(None),
                        col(VectorStoreFileRow.lease_expires_at).is_(None),
                        col(VectorStoreFileRow.lease_expires_at) < now,
                    ),
                )
                .values(worker_id=self._lease.worker_id, lease_expires_at=self._lease.until())
            )
        return bool(result.rowcount)

    async def idle(self) -> None:
        """Waits until every queued file is indexed (tests, benchmarks, shutdown)."""
        await self._idle.wait()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _ingest_later(self, rows: Sequence[VectorStoreFileRow]) -> None:
        for row in rows:
            assert row.seq is not None
            self._mine.add(row.seq)
            self._held = tuple(self._mine)
            task = asyncio.create_task(self._ingest(row.vector_store_id, row.file_id, row.seq))
            self._tasks.add(task)
            self._idle.clear()
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()

    async def _ingest(self, vector_store_id: str, file_id: str, seq: int) -> None:
        try:
            await self._ingest_one(vector_store_id, file_id)
        finally:
            self._mine.discard(seq)
            self._held = tuple(self._mine)

    async def _ingest_one(self, vector_store_id: str, file_id: str) -> None:
        async with self._slots:
            async with self._db.session() as session:
                row = await _store_file(session, vector_store_id, file_id)
            if row.status != "in_progress" or not await self._claim(row):
                return  # cancelled meanwhile, or another live process indexes it
            try:
                stored = await self._files.row(file_id)
                data = await self._files.read(file_id)
                pages = await asyncio.to_thread(
                    extract_text, data, stored.filename, stored.mimetype
                )
                static = row.chunking_strategy.get("static", AUTO_CHUNKING)
                chunks = await asyncio.to_thread(
                    chunk_pages,
                    pages,
                    max_tokens=static["max_chunk_size_tokens"],
                    overlap=static["chunk_overlap_tokens"],
                )
                if not chunks:
                    raise InvalidFile("The file contains no text to search.")
                await self.index.add(vector_store_id, file_id, stored.filename, chunks)
                await self._finish(row, "completed", usage=sum(len(c.text) for c in chunks))
            except UnsupportedFile as exc:
                await self._finish(row, "failed", error=("unsupported_file", str(exc)))
            except (InvalidFile, NotFound) as exc:
                await self._finish(row, "failed", error=("invalid_file", str(exc)))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("indexing %s failed", file_id)
                await self._finish(
                    row, "failed", error=("server_error", "The file could not be indexed.")
                )

    async def _finish(
        self,
        row: VectorStoreFileRow,
        status: str,
        *,
        usage: int = 0,
        error: tuple[str, str] | None = None,
    ) -> None:
        async with self._db.session() as session:
            stored = await session.get(VectorStoreFileRow, row.seq)
            if stored is None or stored.status != "in_progress":
                if status == "completed":  # removed or cancelled while indexing
                    await self.index.remove_file(row.vector_store_id, row.file_id)
                return
            stored.status, stored.usage_bytes = status, usage
            if error:
                stored.last_error = {"code": error[0], "message": error[1]}
            session.add(stored)

    async def _check_files(self, file_ids: Sequence[str]) -> None:
        for file_id in file_ids:
            try:
                await self._files.row(file_id)
            except NotFound as exc:
                raise NotFound("file", file_id, param="file_ids") from exc

    def _new_file_row(
        self,
        vector_store_id: str,
        file_id: str,
        strategy: dict[str, Any],
        *,
        attributes: dict[str, Any] | None = None,
    ) -> VectorStoreFileRow:
        return VectorStoreFileRow(
            vector_store_id=vector_store_id,
            file_id=file_id,
            created_at=self._clock.now(),
            chunking_strategy=strategy,
            attributes=attributes,
            worker_id=self._lease.worker_id,
            lease_expires_at=self._lease.until(),
        )


async def _store(session: AsyncSession, vector_store_id: str) -> VectorStoreRow:
    row = (
        await session.exec(select(VectorStoreRow).where(col(VectorStoreRow.id) == vector_store_id))
    ).first()
    if row is None:
        raise NotFound("vector store", vector_store_id)
    return row


def _files_of(vector_store_id: str) -> Any:
    return select(VectorStoreFileRow).where(
        col(VectorStoreFileRow.vector_store_id) == vector_store_id
    )


async def _store_file(
    session: AsyncSession, vector_store_id: str, file_id: str
) -> VectorStoreFileRow:
    row = (
        await session.exec(
            _files_of(vector_store_id).where(col(VectorStoreFileRow.file_id) == file_id)
        )
    ).first()
    if row is None:
        await _store(session, vector_store_id)
        raise NotFound("file", file_id)
    return row


async def _batch(session: AsyncSession, vector_store_id: str, batch_id: str) -> FileBatchRow:
    row = (
        await session.exec(
            select(FileBatchRow).where(
                col(FileBatchRow.id) == batch_id,
                col(FileBatchRow.vector_store_id) == vector_store_id,
            )
        )
    ).first()
    if row is None:
        raise NotFound("file batch", batch_id)
    return row


async def _counts(session: AsyncSession, filters: list[Any]) -> dict[str, int]:
    statuses = (await session.exec(select(VectorStoreFileRow.status).where(*filters))).all()
    counts = {s: 0 for s in ("in_progress", "completed", "failed", "cancelled")}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    counts["total"] = len(statuses)
    return counts


def _store_wire(row: VectorStoreRow, counts: dict[str, int]) -> VectorStore:
    status = "expired" if row.expired else ("in_progress" if counts["in_progress"] else "completed")
    return VectorStore.model_validate(
        {
            "id": row.id,
            "object": "vector_store",
            "created_at": row.created_at,
            "name": row.name,
            "usage_bytes": 0,
            "file_counts": counts,
            "status": status,
            "expires_after": row.expires_after,
            "expires_at": row.expires_at,
            "last_active_at": row.last_active_at,
            "metadata": row.meta,
        }
    )


def _file_wire(row: VectorStoreFileRow) -> VectorStoreFile:
    return VectorStoreFile.model_validate(
        {
            "id": row.file_id,
            "object": "vector_store.file",
            "usage_bytes": row.usage_bytes,
            "created_at": row.created_at,
            "vector_store_id": row.vector_store_id,
            "status": row.status,
            "last_error": row.last_error,
            "chunking_strategy": {
                "type": "static",
                "static": row.chunking_strategy.get("static", AUTO_CHUNKING),
            },
            "attributes": row.attributes,
        }
    )


def _batch_wire(row: FileBatchRow, counts: dict[str, int]) -> VectorStoreFileBatch:
    if row.cancelled:
        status = "cancelled"
    elif counts["in_progress"]:
        status = "in_progress"
    elif counts["total"] and counts["failed"] == counts["total"]:
        status = "failed"
    else:
        status = "completed"
    return VectorStoreFileBatch.model_validate(
        {
            "id": row.id,
            "object": "vector_store.files_batch",
            "created_at": row.created_at,
            "vector_store_id": row.vector_store_id,
            "status": status,
            "file_counts": counts,
        }
    )


def _hit_wire(hit: Hit) -> VectorStoreSearchResponse:
    return VectorStoreSearchResponse.model_validate(
        {
            "file_id": hit.file_id,
            "filename": hit.filename,
            "score": hit.score,
            "attributes": {"page": hit.page} if hit.page is not None else {},
            "content": [{"type": "text", "text": hit.text}],
        }
    )


def _strategy(value: Any) -> dict[str, Any]:
    if value is None or value.type == "auto":
        return {}
    return {"static": value.static.model_dump()}


def _dump(value: Any) -> dict[str, Any] | None:
    return value.model_dump() if value is not None else None


def _expires_at(row: VectorStoreRow) -> int | None:
    after = row.expires_after
    if not after or row.last_active_at is None:
        return None
    return row.last_active_at + int(after["days"]) * _DAY
