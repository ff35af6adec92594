"""Retrieval benchmark: quality on the test set, ingestion rate, search latency at 10k chunks.

    python bench/retrieval.py                      # SQLite in a temporary directory
    BENCH_DATABASE_URL=postgresql+psycopg://... python bench/retrieval.py   # PostgreSQL too
    BENCH_PG_PORTABLE=1 BENCH_DATABASE_URL=... python bench/retrieval.py    # + without pgvector

Prints one JSON object. Needs the `local-embeddings` extra. On PostgreSQL it creates a
throwaway database on the given server and drops it afterwards; `postgresql` uses pgvector when
the server has it (`dense_path`, and `dense_plan`: the index the dense query's plan scans).
`postgresql_portable` (BENCH_PG_PORTABLE=1) runs without it, then times the next start's
`create_retrieval_schema`, which installs pgvector and fills `chunk_vec` (`backfill`).

- quality: recall@5 and MRR@5 of bm25, dense and hybrid on tests/assistants/retrieval/data.
- ingest: end to end (extract, chunk at 800/400, embed with the local model, insert) over the
  test set's 66 files, model already loaded.
- search: p50/p99 latency per mode over `BENCH_CHUNKS` (default 10,000) chunks of about 800
  estimated tokens in one store (plus the 66 test files). Their vectors are random unit vectors
  (5 windows a chunk, as the local model's 180-token windows give): dense latency depends only
  on their number and size; every query is embedded by the real model.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from sqlalchemy import event, text

from assistants.retrieval import Chunk, ChunkIndex, LocalEmbedder, count_tokens
from storage.database import Database
from storage.retrieval import create_retrieval_schema
from tests.assistants.retrieval.quality import (
    STORE,
    documents,
    evaluate,
    ingest,
    queries,
)
from tests.scratch_database import scratch_database

CHUNKS = int(os.environ.get("BENCH_CHUNKS", "10000"))
SEARCHES = int(os.environ.get("BENCH_SEARCHES", "200"))


class _BulkEmbedder:
    """The local model for queries; random unit vectors for the synthetic bulk chunks."""

    def __init__(self, model: LocalEmbedder) -> None:
        self._model = model
        self.name = model.name
        self.dimensions = model.dimensions
        self.max_input_tokens = model.max_input_tokens
        self._rng = np.random.default_rng(7)
        self.bulk = False

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if not self.bulk:
            return await self._model.embed(texts)
        vectors = self._rng.standard_normal((len(texts), self.dimensions or 384))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        result: list[list[float]] = vectors.tolist()
        return result


def _synthetic_chunks(count: int) -> list[Chunk]:
    rng = random.Random(11)
    sentences = [
        s.strip() + "."
        for _, data in documents()
        for s in data.decode("utf-8", "replace").replace("\n", " ").split(". ")
        if len(s.split()) > 4
    ]
    chunks = []
    for i in range(count):
        body: list[str] = []
        size = 0
        while size < 760:
            body.append(rng.choice(sentences))
            size += count_tokens(body[-1])
        chunk_text = " ".join(body)
        chunks.append(Chunk(i, chunk_text, None, count_tokens(chunk_text)))
    return chunks


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
    }


async def _dense_plan(db: Database, index: ChunkIndex, query: str) -> str:
    """The index (or scan) the pgvector dense query's plan starts from."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, sql: str, params: Any, *_: Any) -> None:
        if "FROM chunk_vec" in sql and "ORDER BY d" in sql:
            seen.append((sql, params))

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        await index.search([STORE], query, mode="dense")
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)
    if not seen:
        return "none"
    async with db.engine.connect() as conn:
        result = await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {seen[0][0]}", seen[0][1])
        plan = json.dumps(result.scalar())
    for name in ("ix_chunk_vec_hnsw_", "ix_chunk_vec_store"):
        if name in plan:
            start = plan.index(name)
            return plan[start : plan.index('"', start)]
    return "Seq Scan" if "Seq Scan" in plan else plan[:200]


async def _run(
    db: Database, model: LocalEmbedder, chunks: list[Chunk], *, pgvector: bool = True
) -> dict[str, Any]:
    await create_retrieval_schema(db, pgvector=pgvector)
    embedder = _BulkEmbedder(model)
    index = ChunkIndex(db, embedder)
    out: dict[str, Any] = {"dense_path": await index.dense_path()}

    started = time.perf_counter()
    added = await ingest(index)
    took = time.perf_counter() - started
    out["ingest"] = {
        "chunks": added,
        "seconds": round(took, 2),
        "chunks_per_s": round(added / took, 1),
    }

    quality = await evaluate(index)
    out["quality"] = {
        mode: {k: v for k, v in values.items() if k != "misses"} for mode, values in quality.items()
    }

    embedder.bulk = True
    started = time.perf_counter()
    batch = 500
    for start in range(0, len(chunks), batch):
        part = chunks[start : start + batch]
        await index.add(STORE, f"file-bulk-{start // batch}", f"bulk-{start // batch}.md", part)
    took = time.perf_counter() - started
    out["bulk_insert"] = {
        "chunks": len(chunks),
        "seconds": round(took, 2),
        "chunks_per_s": round(len(chunks) / took, 1),
        "note": "windowing + insert + index, random vectors (no model time)",
    }
    embedder.bulk = False

    started = time.perf_counter()
    await index.search([STORE], "warm up the vector cache")
    out["first_search_ms"] = round((time.perf_counter() - started) * 1000, 1)
    texts = [q["query"] for q in queries()]
    search: dict[str, Any] = {"chunks": len(chunks) + added}
    for mode in ("bm25", "dense", "hybrid"):
        samples = []
        for i in range(SEARCHES):
            started = time.perf_counter()
            await index.search([STORE], texts[i % len(texts)], max_results=20, mode=mode)
            samples.append(time.perf_counter() - started)
        search[mode] = _percentiles(samples)
    out["search"] = search
    if out["dense_path"] == "pgvector":
        out["dense_plan"] = await _dense_plan(db, index, texts[0])
    if not db.is_sqlite and not pgvector:
        started = time.perf_counter()
        await create_retrieval_schema(db)  # the next start, with pgvector
        async with db.engine.connect() as conn:
            windows = (await conn.execute(text("SELECT count(*) FROM chunk_vec"))).scalar()
        out["backfill"] = {
            "seconds": round(time.perf_counter() - started, 2),
            "windows": windows,
            "note": "create_retrieval_schema: CREATE EXTENSION, chunk_vec filled, HNSW built",
        }
    return out


async def _on_postgresql(
    url: str, model: LocalEmbedder, chunks: list[Chunk], *, pgvector: bool
) -> dict[str, Any]:
    async with scratch_database(url, "bench_retrieval") as db:
        return await _run(db, model, chunks, pgvector=pgvector)


async def main() -> None:
    model = LocalEmbedder()
    started = time.perf_counter()
    await model.warm_up()
    report: dict[str, Any] = {"model_load_s": round(time.perf_counter() - started, 1)}
    started = time.perf_counter()
    chunks = _synthetic_chunks(CHUNKS)
    report["synthetic_chunks_built_s"] = round(time.perf_counter() - started, 1)

    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite+aiosqlite:///{tmp}/bench.db")
        try:
            report["sqlite"] = await _run(db, model, chunks)
        finally:
            await db.dispose()

    url = os.environ.get("BENCH_DATABASE_URL")
    if url:
        report["postgresql"] = await _on_postgresql(url, model, chunks, pgvector=True)
        if os.environ.get("BENCH_PG_PORTABLE") == "1":
            report["postgresql_portable"] = await _on_postgresql(url, model, chunks, pgvector=False)
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main())
