"""The `file_search` tool: hybrid search over the assistant's and the thread's vector stores.

Each hit carries a marker `【{call}:{hit}†{filename}】` that the model copies to cite it; the
engine turns exactly those markers into `file_citation` annotations. Files attached to the
thread's messages for file_search are added to the thread's own store first (created on
demand, expiring 7 days after last use), and the search waits up to a minute for them.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from sqlmodel import col, select

from assistants.tools import ToolContext, attached_files, one_argument, one_argument_schema
from assistants.vector_store_params import VectorStoreCreate, VectorStoreFileCreate
from assistants.vector_stores import VectorStoreService
from storage import Database, ThreadRow

__all__ = ["FileSearchTool"]

_DEFAULT_RESULTS = 20
_PENDING_WAIT = 60.0  # hosted: a run waits up to 60 s for files still being indexed
_QUOTE = 2_000  # characters of a hit the model reads


class FileSearchTool:
    type = "file_search"

    def __init__(self, *, db: Database, stores: VectorStoreService) -> None:
        self._db, self._stores = db, stores

    def schema(self, config: dict[str, Any]) -> dict[str, Any]:
        return one_argument_schema(
            "file_search",
            "Search the documents available to this conversation. Use it for questions about "
            "their content. Each result starts with a citation marker like 【0:1†file.pdf】: "
            "put the marker right after every statement that uses that result, exactly as "
            "written.",
            "query",
            "What to look for.",
        )

    def begin(self, call_id: str, arguments: str) -> dict[str, Any]:
        return {
            "id": call_id,
            "type": "file_search",
            "file_search": {
                "ranking_options": {"ranker": "default_2024_08_21", "score_threshold": 0.0},
                "results": [],
            },
            "_query": one_argument(arguments, "query"),
        }

    async def call(self, call: dict[str, Any], ctx: ToolContext) -> None:
        config = next((t for t in ctx.run.tools if t["type"] == "file_search"), {})
        options = config.get("file_search") or {}
        limit = options.get("max_num_results") or _DEFAULT_RESULTS
        threshold = float((options.get("ranking_options") or {}).get("score_threshold", 0.0))
        call["file_search"]["ranking_options"]["score_threshold"] = threshold
        query = call["_query"].strip()
        store_ids = _store_ids(ctx.assistant.tool_resources) + await self._thread_stores(ctx)
        if not query:
            call["_output"] = json.dumps({"error": "file_search needs a non-empty query"})
            return
        if not store_ids:
            call["_output"] = "No documents are available to search in this conversation."
            return
        await self._stores.touch(store_ids)
        hits = await self._stores.search_stores(store_ids, query, limit, threshold)
        results, markers, pages, lines = [], {}, {}, []
        for number, hit in enumerate(hits):
            marker = f"【{ctx.ordinal}:{number}†{hit.filename}】"
            markers[marker] = hit.file_id
            pages[marker] = hit.page
            page = f", page {hit.page}" if hit.page is not None else ""
            lines.append(f"{marker} ({hit.filename}{page})\n{hit.text[:_QUOTE]}")
            results.append(
                {
                    "file_id": hit.file_id,
                    "file_name": hit.filename,
                    "score": hit.score,
                    "content": [{"type": "text", "text": hit.text}],
                }
            )
        call["file_search"]["results"] = results
        call["_markers"] = markers
        call["_pages"] = pages
        call["_output"] = (
            f"Results for {query!r}; cite with the marker before each result:\n\n"
            + "\n\n".join(lines)
            if lines
            else f"Nothing in the documents matches {query!r}."
        )
        ctx.emit({"type": "file_search", "file_search": {"results": results}})

    async def _thread_stores(self, ctx: ToolContext) -> list[str]:
        """The thread's store, after adding the files attached to its messages."""
        attached = await attached_files(self._db, ctx.thread.id, "file_search")
        store_ids = _store_ids(ctx.thread.tool_resources)
        if not attached:
            return store_ids
        if not store_ids:
            store = await self._stores.create(
                VectorStoreCreate.model_validate(
                    {
                        "name": f"thread {ctx.thread.id}",
                        "expires_after": {"anchor": "last_active_at", "days": 7},
                    }
                ),
                thread_id=ctx.thread.id,
            )
            store_ids = [store.id]
            await self._remember(ctx.thread.id, store.id)
        for file_id in attached:
            await self._stores.add_file(store_ids[0], VectorStoreFileCreate(file_id=file_id))
        await self._wait_indexed(store_ids[0])
        return store_ids

    async def _remember(self, thread_id: str, store_id: str) -> None:
        async with self._db.session() as session:
            thread = (
                await session.exec(select(ThreadRow).where(col(ThreadRow.id) == thread_id))
            ).one()
            resources = dict(thread.tool_resources or {})
            resources["file_search"] = {"vector_store_ids": [store_id]}
            thread.tool_resources = resources
            session.add(thread)

    async def _wait_indexed(self, store_id: str) -> None:
        deadline = time.monotonic() + _PENDING_WAIT
        while time.monotonic() < deadline:
            store = await self._stores.retrieve(store_id)
            if store.file_counts.in_progress == 0:
                return
            await asyncio.sleep(0.1)


def _store_ids(resources: dict[str, Any] | None) -> list[str]:
    return list(((resources or {}).get("file_search") or {}).get("vector_store_ids") or [])
