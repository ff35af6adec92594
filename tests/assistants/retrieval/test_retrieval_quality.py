"""Retrieval quality on the project's test set: hybrid beats BM25 and dense alone.

Needs the local embedding model (the `local-embeddings` extra); runs on SQLite, and on
PostgreSQL when TEST_DATABASE_URL is set.
"""

from __future__ import annotations

from assistants.retrieval import ChunkIndex, LocalEmbedder
from storage.database import Database
from tests.assistants.retrieval.quality import documents, evaluate, ingest, queries


def test_the_test_set_is_big_enough() -> None:
    items = queries()
    assert len(documents()) >= 50 and len(items) >= 30
    kinds = {item["kind"] for item in items}
    assert {"paraphrase", "exact"} <= kinds
    names = {name for name, _ in documents()}
    assert all(set(item["relevant"]) <= names for item in items)


async def test_hybrid_recall_beats_bm25_and_dense(
    retrieval_db: Database, local_embedder: LocalEmbedder
) -> None:
    index = ChunkIndex(retrieval_db, local_embedder)
    assert await ingest(index) >= 66
    results = await evaluate(index)
    recall = {mode: results[mode]["recall@5"] for mode in results}
    assert recall["hybrid"] >= 0.9, results["hybrid"]
    assert recall["hybrid"] > recall["bm25"], results
    assert recall["hybrid"] > recall["dense"], results
    # Each single method fails where the test set says it should.
    assert results["bm25"]["by_kind"]["paraphrase"] < results["dense"]["by_kind"]["paraphrase"]
    assert results["dense"]["by_kind"]["exact"] < results["bm25"]["by_kind"]["exact"]
