"""The chunk index on a real database (SQLite, or PostgreSQL with TEST_DATABASE_URL)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from sqlalchemy import text

from assistants.retrieval import Chunk, ChunkIndex, Page, chunk_pages
from storage.database import Database
from storage.retrieval import create_retrieval_schema
from tests.assistants.retrieval.conftest import HashEmbedder

DOCS = {
    "file-vacation": ("vacation.md", "Employees get 30 days of annual leave. Book it in Personio."),
    "file-vpn": ("vpn.md", "Connect to KestrelConnect. Error KST-4013 means a bad signature."),
    "file-pets": ("pets.md", "Dogs are welcome in the Austin office on Fridays."),
}


def chunks_of(body: str) -> list[Chunk]:
    return chunk_pages([Page(None, body)])


async def fill(index: ChunkIndex, store: str, docs: dict[str, tuple[str, str]] = DOCS) -> None:
    for file_id, (name, body) in docs.items():
        await index.add(store, file_id, name, chunks_of(body))


@pytest.mark.parametrize("mode", ["hybrid", "bm25", "dense"])
async def test_search_finds_and_scores_within_0_and_1(
    retrieval_db: Database, hash_embedder: HashEmbedder, mode: str
) -> None:
    index = ChunkIndex(retrieval_db, hash_embedder)
    await fill(index, "vs_a")
    hits = await index.search(["vs_a"], "KestrelConnect KST-4013 signature", mode=mode)  # type: ignore[arg-type]
    assert hits[0].file_id == "file-vpn" and hits[0].filename == "vpn.md"
    assert hits[0].chunk_index == 0 and hits[0].page is None and "KST-4013" in hits[0].text
    assert all(0.0 <= h.score <= 1.0 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize("mode", ["hybrid", "bm25", "dense"])
async def test_search_never_crosses_stores(
    retrieval_db: Database, hash_embedder: HashEmbedder, mode: str
) -> None:
    index = ChunkIndex(retrieval_db, hash_embedder)
    await fill(index, "vs_a")
    await fill(index, "vs_b")  # the same files, in another store
    await index.add("vs_c", "file-secret", "secret.md", chunks_of("Dogs dogs dogs Austin Fridays."))
    for query in ["dogs in the Austin office", "annual leave", "KST-4013", "zzz unknown"]:
        hits = await index.search(["vs_a"], query, mode=mode)  # type: ignore[arg-type]
        assert {h.vector_store_id for h in hits} <= {"vs_a"}
        assert "file-secret" not in {h.file_id for h in hits}
    both = await index.search(["vs_a", "vs_c"], "dogs Austin Fridays", mode=mode)  # type: ignore[arg-type]
    assert {h.vector_store_id for h in both} == {"vs_a", "vs_c"}
    assert await index.search([], "dogs", mode=mode) == []  # type: ignore[arg-type]
    assert await index.search(["vs_missing"], "dogs", mode=mode) == []  # type: ignore[arg-type]


async def test_remove_file_and_store(retrieval_db: Database, hash_embedder: HashEmbedder) -> None:
    index = ChunkIndex(retrieval_db, hash_embedder)
    await fill(index, "vs_a")
    await fill(index, "vs_b")
    assert await index.search(["vs_a"], "dogs Austin") != []
    assert await index.remove_file("vs_a", "file-pets") == 1
    for mode in ("bm25", "dense", "hybrid"):
        hits = await index.search(["vs_a"], "dogs Austin Fridays", mode=mode)  # type: ignore[arg-type]
        assert "file-pets" not in {h.file_id for h in hits}
    others = await index.search(["vs_b"], "dogs Austin Fridays")
    assert others[0].file_id == "file-pets"
    assert await index.remove_store("vs_a") == 2
    assert await index.search(["vs_a"], "annual leave") == []
    assert await index.search(["vs_b"], "annual leave") != []
    await _check_fts(retrieval_db)


async def test_add_replaces_a_files_chunks(
    retrieval_db: Database, hash_embedder: HashEmbedder
) -> None:
    index = ChunkIndex(retrieval_db, hash_embedder)
    await index.add("vs_a", "file-1", "a.md", chunks_of("old content about llamas"))
    long = " ".join(f"Sentence {i} about alpacas and their wool." for i in range(200))
    count = await index.add(
        "vs_a", "file-1", "a.md", chunk_pages([Page(3, long)], max_tokens=100, overlap=0)
    )
    assert count > 1
    assert await index.search(["vs_a"], "llamas", mode="bm25") == []
    texts = await index.file_chunks("vs_a", "file-1")
    assert len(texts) == count and texts[0].startswith("Sentence 0 ")
    hits = await index.search(["vs_a"], "alpacas wool", mode="bm25")
    assert hits and all(h.page == 3 for h in hits)
    await _check_fts(retrieval_db)


async def test_threshold_and_max_results(
    retrieval_db: Database, hash_embedder: HashEmbedder
) -> None:
    index = ChunkIndex(retrieval_db, hash_embedder)
    many = {f"file-{i}": (f"{i}.md", f"Document {i} mentions the word falcon.") for i in range(30)}
    await fill(index, "vs_a", many)
    assert len(await index.search(["vs_a"], "falcon", max_results=7)) == 7
    everything = await index.search(["vs_a"], "falcon", max_results=50)
    assert len(everything) == 30
    cut = everything[3].score
    assert all(h.score >= cut for h in await index.search(["vs_a"], "falcon", score_threshold=cut))
    assert await index.search(["vs_a"], "falcon", score_threshold=1.0) == []
    assert await index.search(["vs_a"], "   ") == []


@pytest.mark.parametrize(
    "query",
    ['"unbalanced', "NEAR(a b)", "a* OR b AND -c", "col:value", "'; DROP TABLE chunk; --", "!!!"],
)
async def test_query_syntax_is_never_interpreted(
    retrieval_db: Database, hash_embedder: HashEmbedder, query: str
) -> None:
    index = ChunkIndex(retrieval_db, hash_embedder)
    await fill(index, "vs_a")
    for mode in ("bm25", "hybrid"):
        await index.search(["vs_a"], query, mode=mode)  # type: ignore[arg-type]
    assert len(await index.file_chunks("vs_a", "file-vpn")) == 1


async def test_without_embedder_hybrid_is_bm25(retrieval_db: Database) -> None:
    index = ChunkIndex(retrieval_db, None)
    await fill(index, "vs_a")
    hybrid = await index.search(["vs_a"], "annual leave Personio")
    assert hybrid == await index.search(["vs_a"], "annual leave Personio", mode="bm25")
    assert hybrid[0].file_id == "file-vacation"
    with pytest.raises(ValueError, match="embedder"):
        await index.search(["vs_a"], "x", mode="dense")
    with pytest.raises(ValueError, match="mode"):
        await index.search(["vs_a"], "x", mode="fuzzy")  # type: ignore[arg-type]


async def test_chunks_without_vectors_still_found_by_keywords(
    retrieval_db: Database, hash_embedder: HashEmbedder
) -> None:
    await fill(ChunkIndex(retrieval_db, None), "vs_a")  # indexed before an embedder existed
    index = ChunkIndex(retrieval_db, hash_embedder)
    hits = await index.search(["vs_a"], "annual leave Personio")
    assert hits[0].file_id == "file-vacation"
    assert hits == await index.search(["vs_a"], "annual leave Personio", mode="bm25")
    assert await index.search(["vs_a"], "annual leave", mode="dense") == []


async def test_long_chunks_get_window_vectors(retrieval_db: Database) -> None:
    embedder = HashEmbedder(max_input_tokens=40)
    index = ChunkIndex(retrieval_db, embedder)
    body = " ".join(f"Filler sentence number {i} about nothing much." for i in range(120))
    body += " The hidden needle is a marmalade sandwich."
    chunks = chunk_pages([Page(None, body)], max_tokens=4096, overlap=0)
    await index.add("vs_a", "file-1", "long.md", chunks)
    assert len(chunks) == 1 and len(embedder.calls[0]) > 5  # one chunk, many windows
    async with retrieval_db.engine.connect() as conn:
        blob, dims = (await conn.execute(text("SELECT embedding, embedding_dims FROM chunk"))).one()
    assert len(blob) == 4 * dims * len(embedder.calls[0])
    matrix = np.frombuffer(blob, dtype="<f4").reshape(-1, dims)
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    query = "marmalade sandwich needle"
    hits = await index.search(["vs_a"], query, mode="dense")
    whole, asked = await HashEmbedder().embed([body, query])
    diluted = float(np.dot(whole, asked))
    assert hits and hits[0].score > 1.5 * diluted  # the best window, not the whole chunk


async def test_writes_from_another_process_invalidate_the_vector_cache(
    retrieval_db: Database, hash_embedder: HashEmbedder
) -> None:
    searcher = ChunkIndex(retrieval_db, hash_embedder)
    writer = ChunkIndex(retrieval_db, hash_embedder)  # stands in for another process
    await fill(writer, "vs_a")
    assert (await searcher.search(["vs_a"], "dogs Austin", mode="dense"))[0].file_id == "file-pets"
    await writer.remove_file("vs_a", "file-pets")
    await writer.add("vs_a", "file-cats", "cats.md", chunks_of("Cats are welcome too."))
    await writer.add("vs_a", "file-birds", "birds.md", chunks_of("Birds are fine in Austin."))
    await writer.remove_file("vs_a", "file-birds")
    hits = await searcher.search(["vs_a"], "Cats welcome", mode="dense", max_results=50)
    assert hits[0].file_id == "file-cats"
    assert {h.file_id for h in hits}.isdisjoint({"file-pets", "file-birds"})


async def test_schema_creation_is_idempotent_and_indexes_earlier_rows(
    retrieval_db: Database,
) -> None:
    await create_retrieval_schema(retrieval_db)
    index = ChunkIndex(retrieval_db, None)
    await fill(index, "vs_a")
    await create_retrieval_schema(retrieval_db)
    assert (await index.search(["vs_a"], "KestrelConnect"))[0].file_id == "file-vpn"
    if retrieval_db.is_sqlite:  # rows written while the FTS table was missing
        async with retrieval_db.engine.begin() as conn:
            for name in ("chunk_fts_insert", "chunk_fts_delete", "chunk_fts_update"):
                await conn.execute(text(f"DROP TRIGGER {name}"))
            await conn.execute(text("DROP TABLE chunk_fts"))
        await index.add("vs_a", "file-late", "late.md", chunks_of("Late arrival of zeppelins."))
        await create_retrieval_schema(retrieval_db)
        assert (await index.search(["vs_a"], "zeppelins"))[0].file_id == "file-late"
        await _check_fts(retrieval_db)


async def test_search_does_not_block_the_event_loop(
    retrieval_db: Database, hash_embedder: HashEmbedder
) -> None:
    index = ChunkIndex(retrieval_db, hash_embedder)
    body = " ".join(f"Line {i} of a long handbook about travel and expenses." for i in range(3000))
    await index.add(
        "vs_a", "file-1", "big.md", chunk_pages([Page(None, body)], max_tokens=100, overlap=0)
    )
    gaps: list[float] = []

    async def heartbeat() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    beat = asyncio.create_task(heartbeat())
    try:
        for _ in range(5):
            await index.search(["vs_a"], "travel expenses handbook")
    finally:
        beat.cancel()
    assert max(gaps) < 0.25


async def test_dense_path_follows_the_database(
    retrieval_db: Database, hash_embedder: HashEmbedder, request: pytest.FixtureRequest
) -> None:
    index = ChunkIndex(retrieval_db, hash_embedder)
    variant = request.node.callspec.params["retrieval_db"]
    assert await index.dense_path() == ("pgvector" if variant == "pgvector" else "portable")


async def test_dense_search_returns_enough_chunks_of_many_windows(
    retrieval_db: Database,
) -> None:
    # Windows come out of an index (pgvector) one by one: 30 chunks of ~10 similar windows
    # each must still give 25 distinct chunks.
    index = ChunkIndex(retrieval_db, HashEmbedder(max_input_tokens=40))
    for i in range(30):
        body = " ".join(f"Puffins nest on cliffs, note {i} line {j}." for j in range(40))
        await index.add(
            "vs_a", f"file-{i}", f"{i}.md", chunk_pages([Page(None, body)], max_tokens=4096)
        )
    hits = await index.search(["vs_a"], "puffins nest on cliffs", mode="dense", max_results=25)
    assert len(hits) == 25 and len({h.file_id for h in hits}) == 25


async def test_vectors_of_another_model_are_never_compared(retrieval_db: Database) -> None:
    await fill(ChunkIndex(retrieval_db, HashEmbedder()), "vs_a")
    other = HashEmbedder()
    other.name = "test:other"  # same length, another vector space
    index = ChunkIndex(retrieval_db, other)
    assert await index.search(["vs_a"], "dogs Austin", mode="dense") == []
    hybrid = await index.search(["vs_a"], "dogs Austin")
    assert hybrid == await index.search(["vs_a"], "dogs Austin", mode="bm25")


async def test_bm25_top_hits_do_not_depend_on_how_many_are_asked_for(
    retrieval_db: Database,
) -> None:
    # PostgreSQL reads the tsvectors of only the chunks that can reach the top n; the top 5
    # must be the first 5 of the top 200 (where every candidate is read).
    index = ChunkIndex(retrieval_db, None)
    for i in range(300):
        words = ["alpha"] * (i % 7 + 1) + ["beta"] * (i % 5) + ["gamma"] * (i % 37 == 0)
        words += [f"filler{j}" for j in range(i // 2)]
        await index.add("vs_a", f"file-{i}", f"{i}.md", chunks_of(" ".join(words)))
    for query in ("alpha beta gamma", "alpha", "beta gamma filler3"):
        top = await index.search(["vs_a"], query, mode="bm25", max_results=5)
        everything = await index.search(["vs_a"], query, mode="bm25", max_results=200)
        assert len(everything) == 200
        assert [h.file_id for h in top] == [h.file_id for h in everything[:5]], query
        assert [h.score for h in top] == pytest.approx([h.score for h in everything[:5]])


async def _check_fts(db: Database) -> None:
    if db.is_sqlite:  # raises if the external-content index drifted from the table
        async with db.engine.begin() as conn:
            await conn.execute(text("INSERT INTO chunk_fts(chunk_fts) VALUES ('integrity-check')"))
