"""pgvector: dense search in PostgreSQL (HNSW over `chunk_vec`), its schema and backfill, and the
portable path on a PostgreSQL database without it.

PostgreSQL only (TEST_DATABASE_URL). A missing extension skips these tests, or fails them under
PGVECTOR_REQUIRED=1 (CI installs it with .ci/pgvector).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection

from assistants.retrieval import Chunk, ChunkIndex, LocalEmbedder, Page, chunk_pages
from storage.database import Database
from storage.retrieval import create_retrieval_schema
from tests.assistants.retrieval.conftest import (
    PG_URL,
    HashEmbedder,
    fresh_database,
    require_pgvector,
)
from tests.assistants.retrieval.quality import evaluate, ingest, queries

pytestmark = pytest.mark.skipif(not PG_URL, reason="pgvector needs PostgreSQL (TEST_DATABASE_URL)")

DOCS = {
    "file-vacation": ("vacation.md", "Employees get 30 days of annual leave. Book it in Personio."),
    "file-vpn": ("vpn.md", "Connect to KestrelConnect. Error KST-4013 means a bad signature."),
    "file-pets": ("pets.md", "Dogs are welcome in the Austin office on Fridays."),
}
QUERIES = ["dogs in the Austin office", "annual leave", "KST-4013 signature", "marmalade"]


def chunks_of(body: str) -> list[Chunk]:
    return chunk_pages([Page(None, body)])


async def fill(index: ChunkIndex, store: str) -> None:
    for file_id, (name, body) in DOCS.items():
        await index.add(store, file_id, name, chunks_of(body))
    long = " ".join(f"Filler sentence number {i} about nothing much." for i in range(60))
    chunks = chunk_pages([Page(None, long + " A marmalade sandwich.")], max_tokens=4096)
    await index.add(store, "file-long", "long.md", chunks)


class SizedHashEmbedder(HashEmbedder):
    """HashEmbedder with another name and length (its own vector space)."""

    def __init__(self, dims: int) -> None:
        super().__init__(max_input_tokens=40)
        self.name, self.dimensions = f"test:hash{dims}", dims

    def _vector(self, value: str) -> list[float]:
        dims = self.dimensions or 1
        folded = [0.0] * dims  # 256 buckets folded into fewer, or spread over more
        for i, v in enumerate(super()._vector(value)):
            folded[i % dims] += v
        return folded


class MemoEmbedder:
    """The local model, remembering what it embedded (the test set is embedded twice)."""

    def __init__(self, inner: LocalEmbedder) -> None:
        self._inner, self._memo = inner, dict[str, list[float]]()
        self.name, self.dimensions = inner.name, inner.dimensions
        self.max_input_tokens = inner.max_input_tokens

    async def embed(self, texts: list[str]) -> list[list[float]]:
        missing = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if missing:
            self._memo.update(zip(missing, await self._inner.embed(missing), strict=True))
        return [self._memo[t] for t in texts]


async def scalar(db: Database, sql: str, **params: Any) -> Any:
    async with db.engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


async def windows_stored(db: Database) -> int:
    """Windows in `chunk`'s embeddings: what `chunk_vec` must hold."""
    total = await scalar(
        db, "SELECT sum(length(embedding) / 4 / embedding_dims) FROM chunk WHERE embedding_dims > 0"
    )
    return int(total or 0)


@contextmanager
def statements(db: Database) -> Iterator[list[tuple[str, Any]]]:
    """Records the SQL (and parameters) the engine sends while the block runs."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, sql: str, params: Any, *_: Any) -> None:
        seen.append((sql, params))

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)


async def plan(conn: AsyncConnection, sql: str, params: Any) -> str:
    result = await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}", params)
    return json.dumps(result.scalar())


async def test_dense_search_runs_on_the_hnsw_index(tmp_path: Path) -> None:
    async with fresh_database(tmp_path) as db:
        await require_pgvector(db)
        embedder = HashEmbedder(max_input_tokens=40)
        index = ChunkIndex(db, embedder)
        assert await index.dense_path() == "pgvector"
        await fill(index, "vs_a")
        await fill(index, "vs_b")
        windows = await windows_stored(db)
        assert windows > 2 * len(DOCS) + 2  # the long chunk has several windows
        assert await scalar(db, "SELECT count(*) FROM chunk_vec") == windows
        definition = await scalar(
            db, "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_chunk_vec_hnsw_256'"
        )
        assert "USING hnsw" in definition and "vector_cosine_ops" in definition
        assert "(embedding)::vector(256)" in definition and "(dims = 256)" in definition

        with statements(db) as seen:
            hits = await index.search(["vs_a"], "dogs in the Austin office", mode="dense")
        assert hits[0].file_id == "file-pets" and {h.vector_store_id for h in hits} == {"vs_a"}
        assert not index._cache  # nothing loaded into the process
        dense = [(sql, p) for sql, p in seen if "FROM chunk_vec" in sql and "ORDER BY d" in sql]
        assert len(dense) == 1
        async with db.engine.begin() as conn:
            # A handful of rows: the planner would rather sort them; forbid that to show that
            # the query can use the partial index at all (bench/retrieval.py shows it chosen).
            await conn.execute(text("SET LOCAL enable_seqscan = off"))
            await conn.execute(text("SET LOCAL enable_sort = off"))
            assert "ix_chunk_vec_hnsw_256" in await plan(conn, *dense[0])


async def test_top_hits_equal_the_portable_paths_on_the_test_set(
    tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    embedder = MemoEmbedder(local_embedder)
    async with (
        fresh_database(tmp_path) as with_pgvector,
        fresh_database(tmp_path, pgvector=False) as portable_db,
    ):
        await require_pgvector(with_pgvector)
        fast, exact = ChunkIndex(with_pgvector, embedder), ChunkIndex(portable_db, embedder)
        assert (await fast.dense_path(), await exact.dense_path()) == ("pgvector", "portable")
        await ingest(fast)
        await ingest(exact)
        assert await scalar(with_pgvector, "SELECT count(*) FROM chunk_vec") == (
            await windows_stored(with_pgvector)
        )
        assert await evaluate(fast) == await evaluate(exact)
        for item in queries():
            for mode in ("dense", "hybrid"):
                a = await fast.search(["vs_quality"], item["query"], max_results=5, mode=mode)
                b = await exact.search(["vs_quality"], item["query"], max_results=5, mode=mode)
                assert [(h.file_id, h.chunk_index) for h in a] == [
                    (h.file_id, h.chunk_index) for h in b
                ], (mode, item["query"])
                assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)


async def test_start_backfills_chunks_embedded_before_pgvector(tmp_path: Path) -> None:
    async with fresh_database(tmp_path, pgvector=False) as db:
        embedder = HashEmbedder(max_input_tokens=40)
        before = ChunkIndex(db, embedder)
        assert await before.dense_path() == "portable"
        await fill(before, "vs_a")
        await fill(before, "vs_b")
        assert await scalar(db, "SELECT to_regclass('chunk_vec')") is None
        expected = {q: await before.search(["vs_a"], q, mode="dense") for q in QUERIES}

        await create_retrieval_schema(db)  # the next start, with pgvector installed
        await require_pgvector(db)
        windows = await windows_stored(db)
        assert await scalar(db, "SELECT count(*) FROM chunk_vec") == windows
        assert await scalar(db, "SELECT to_regclass('ix_chunk_vec_hnsw_256')") is not None
        await create_retrieval_schema(db)  # and the one after: nothing twice
        assert await scalar(db, "SELECT count(*) FROM chunk_vec") == windows

        after = ChunkIndex(db, embedder)
        assert await after.dense_path() == "pgvector"
        for query, hits in expected.items():
            found = await after.search(["vs_a"], query, mode="dense")
            assert [h.file_id for h in found] == [h.file_id for h in hits]
            assert [h.score for h in found] == pytest.approx([h.score for h in hits], abs=1e-5)


async def test_without_pgvector_postgresql_searches_in_python(tmp_path: Path) -> None:
    async with fresh_database(tmp_path, pgvector=False) as db:
        index = ChunkIndex(db, HashEmbedder())
        assert await index.dense_path() == "portable"
        await fill(index, "vs_a")
        assert await scalar(db, "SELECT to_regclass('chunk_vec')") is None
        for mode in ("dense", "hybrid"):
            hits = await index.search(["vs_a"], "dogs in the Austin office", mode=mode)  # type: ignore[arg-type]
            assert hits[0].file_id == "file-pets"
        assert index._cache  # vectors were loaded into the process


async def test_vectors_follow_their_chunks(tmp_path: Path) -> None:
    async with fresh_database(tmp_path) as db:
        await require_pgvector(db)
        index = ChunkIndex(db, HashEmbedder(max_input_tokens=40))
        await fill(index, "vs_a")
        await fill(index, "vs_b")
        count = "SELECT count(*) FROM chunk_vec WHERE vector_store_id = :v"
        assert await scalar(db, count, v="vs_a") == await scalar(db, count, v="vs_b")
        await index.remove_file("vs_a", "file-long")
        await index.add("vs_a", "file-pets", "pets.md", chunks_of("Cats only, no dogs."))
        await index.remove_store("vs_b")
        assert await scalar(db, count, v="vs_b") == 0
        assert await scalar(db, "SELECT count(*) FROM chunk_vec") == await windows_stored(db)
        orphans = "SELECT count(*) FROM chunk_vec v LEFT JOIN chunk c USING (seq) WHERE c IS NULL"
        assert await scalar(db, orphans) == 0
        hits = await index.search(["vs_a"], "cats", mode="dense", max_results=50)
        assert "file-long" not in {h.file_id for h in hits} and hits[0].file_id == "file-pets"


async def test_each_dimension_gets_its_own_index(tmp_path: Path) -> None:
    async with fresh_database(tmp_path) as db:
        await require_pgvector(db)
        small, huge = SizedHashEmbedder(64), SizedHashEmbedder(3072)  # past HNSW's 2000 on vector
        await fill(ChunkIndex(db, small), "vs_small")
        await fill(ChunkIndex(db, huge), "vs_huge")
        definitions = await scalar(
            db,
            "SELECT string_agg(indexdef, ' ') FROM pg_indexes "
            "WHERE indexname IN ('ix_chunk_vec_hnsw_64', 'ix_chunk_vec_hnsw_3072')",
        )
        assert "(embedding)::vector(64)) vector_cosine_ops" in definitions
        assert "(embedding)::halfvec(3072)) halfvec_cosine_ops" in definitions
        for embedder, store in ((small, "vs_small"), (huge, "vs_huge")):
            index = ChunkIndex(db, embedder)
            query = "dogs in the Austin office"
            hits = await index.search(["vs_small", "vs_huge"], query, mode="dense")
            assert hits[0].file_id == "file-pets"
            # Only this model's vectors are compared: one hit per chunk of its store.
            assert {h.vector_store_id for h in hits} == {store} and len(hits) == len(DOCS) + 1
