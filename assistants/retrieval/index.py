"""The chunk index: stores chunks with their vectors, and searches them (BM25, dense, hybrid).

Search only ever reads the stores it is given: every SQL statement filters on the
`vector_store_id`s passed in, and the vector cache is keyed by store.

Scores (`Hit.score`, always within 0..1, higher is better):
- bm25: Okapi BM25 (k1 1.2, b 0.75; text weight 1, filename 0.5) squashed to 0..1 as
  `s / (s + BM25_HALF)`. SQLite: FTS5's `bm25()`. PostgreSQL: computed in SQL over the GIN
  index's candidates (`_PG_BM25`: IDF from the searched stores, `ts_rank` of each term as the
  term-frequency part), since `ts_rank`/`ts_rank_cd` have no IDF and measured worse; exact
  top-n with a bound that spares reading most candidates' tsvectors.
- dense: the cosine similarity of query and chunk vectors, clipped at 0. A chunk longer than the
  embedder's input limit has several window vectors; its similarity is the best window's.
- hybrid (default): a blend `DENSE_WEIGHT * dense + (1 - DENSE_WEIGHT) * bm25` over the union
  of both candidate lists; every chunk of the searched stores has a dense score, so BM25
  candidates are blended with their exact cosine. On the test set in
  `tests/assistants/retrieval/data` the blend (weight 0.7) beat reciprocal-rank fusion clearly
  (recall@5 0.99 vs 0.84 on SQLite; see bench/retrieval.py); RRF stays available as
  `fusion="rrf"` (score: fused RRF divided by its best possible value).

Dense search has two paths (`ChunkIndex.dense_path`), chosen per database:
- pgvector (PostgreSQL where `create_retrieval_schema` made `chunk_vec`): the database ranks the
  window vectors with its HNSW index (`ORDER BY embedding <=> query LIMIT n`, filtered by store,
  model and dimensions; `hnsw.ef_search` at least 100, iterative scans so that filters cannot
  starve the LIMIT) and keeps each chunk's best window; BM25 candidates outside that top get
  their exact cosine from `chunk_vec`. Approximate, but on the test set its top hits are the
  portable path's. Nothing is cached in the process.
- portable (SQLite, or PostgreSQL without pgvector): exact (brute force) with numpy over the
  searched stores' vectors, which are cached in memory per store (`cache_bytes`, least recently
  used out) and reloaded when the store's `(count, max(seq))` changes. At 384 dimensions a
  10k-chunk store is ~15-60 MB and scores in milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sqlalchemy import bindparam, delete, insert, text
from sqlmodel import col

from assistants.retrieval.chunking import Chunk, chunk_pages
from assistants.retrieval.embeddings import Embedder
from assistants.retrieval.extract import Page
from storage.database import Database
from storage.retrieval import (
    ChunkRow,
    ensure_vector_index,
    pgvector_version,
    store_vectors,
    vector_column,
    vector_literal,
)

__all__ = ["BM25_HALF", "DENSE_WEIGHT", "ChunkIndex", "DensePath", "Hit", "Mode"]

log = logging.getLogger("assistants.retrieval")

Mode = Literal["hybrid", "bm25", "dense"]
Fusion = Literal["blend", "rrf"]
#: Where dense search runs: in the database (pgvector HNSW) or in Python (numpy, any database).
DensePath = Literal["pgvector", "portable"]

#: BM25 value that maps to a score of 0.5 on SQLite (FTS5 bm25 of a good one-term match).
BM25_HALF = 5.0
#: Weight of the dense score in the hybrid blend.
DENSE_WEIGHT = 0.7
RRF_K = 60
_MAX_TERMS = 64
_TABLE = ChunkRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Hit:
    file_id: str
    filename: str
    chunk_index: int
    page: int | None
    text: str
    score: float
    vector_store_id: str = ""


@dataclass(slots=True)
class _Vectors:
    """One store's vectors: `matrix` rows are windows; chunk i owns rows starts[i]:starts[i+1]."""

    version: tuple[int, int]
    seqs: np.ndarray[Any, np.dtype[np.int64]]
    starts: np.ndarray[Any, np.dtype[np.int64]]
    matrix: np.ndarray[Any, np.dtype[np.float32]]

    @property
    def nbytes(self) -> int:
        return int(self.matrix.nbytes + self.seqs.nbytes + self.starts.nbytes)


class ChunkIndex:
    """Chunks of vector store files in the database; hybrid search over them.

    Usage::

        index = ChunkIndex(db, default_embedder(client=model_client, model=None))
        await index.add("vs_1", "file-1", "handbook.pdf", chunks)
        hits = await index.search(["vs_1"], "how many vacation days?", max_results=5)

    `embedder=None` stores no vectors and searches by BM25 alone.
    """

    def __init__(
        self,
        db: Database,
        embedder: Embedder | None,
        *,
        fusion: Fusion = "blend",
        dense_weight: float = DENSE_WEIGHT,
        candidates: int = 50,
        cache_bytes: int = 256 * 2**20,
    ) -> None:
        self._db, self.embedder = db, embedder
        self._fusion, self._dense_weight, self._candidates = fusion, dense_weight, candidates
        self._cache: OrderedDict[tuple[str, str], _Vectors] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._load_lock = asyncio.Lock()
        self._pgvector: bool | None = None  # decided at first use, per database
        self._indexed_dims: set[int] = set()

    # -- writing ------------------------------------------------------------------------------

    async def add(
        self, vector_store_id: str, file_id: str, filename: str, chunks: Sequence[Chunk]
    ) -> int:
        """Stores a file's chunks (replacing any it had in this store); returns how many.

        Embeds first, outside any transaction; raises `EmbeddingFailed` if the embedder does.
        """
        embedded = await self._embed_chunks(chunks) if self.embedder is not None else None
        model = self.embedder.name if self.embedder is not None else None
        rows = [
            {
                "vector_store_id": vector_store_id,
                "file_id": file_id,
                "filename": filename,
                "chunk_index": i,
                "page": chunk.page,
                "text": chunk.text,
                "tokens": chunk.tokens,
                "embedding": embedded[i][0] if embedded else None,
                "embedding_dims": embedded[i][1] if embedded else None,
                "embedding_model": model if embedded else None,
            }
            for i, chunk in enumerate(chunks)
        ]
        in_sql = bool(embedded) and await self.dense_path() == "pgvector"
        if in_sql and embedded:
            for dims in sorted({dims for _, dims in embedded}):
                await self._ensure_index(dims)
        async with self._db.session() as session:
            conn = await session.connection()
            await conn.execute(delete(_TABLE).where(*_file_filter(vector_store_id, file_id)))
            if rows:
                await conn.execute(insert(_TABLE), rows)
            if in_sql and embedded and model:
                written = await conn.execute(
                    text(
                        "SELECT chunk_index, seq FROM chunk "
                        "WHERE vector_store_id = :v AND file_id = :f"
                    ),
                    {"v": vector_store_id, "f": file_id},
                )
                seqs = {int(index): int(seq) for index, seq in written}
                await store_vectors(
                    conn,
                    [
                        (seqs[i], vector_store_id, model, dims, blob)
                        for i, (blob, dims) in enumerate(embedded)
                    ],
                )
        self._forget(vector_store_id)
        return len(rows)

    async def dense_path(self) -> DensePath:
        """`pgvector` when this database searches vectors itself (PostgreSQL with `chunk_vec`
        from `create_retrieval_schema`), else `portable`. Decided once, at first use."""
        if self._pgvector is None:
            if self._db.is_sqlite:
                self._pgvector = False
            else:
                async with self._db.engine.connect() as conn:
                    self._pgvector = await pgvector_version(conn) is not None
        return "pgvector" if self._pgvector else "portable"

    async def _ensure_index(self, dims: int) -> None:
        # A transaction of its own, before the write: CREATE INDEX waits for writers of
        # chunk_vec, so it must never run inside one.
        if dims in self._indexed_dims:
            return
        async with self._db.engine.begin() as conn:
            await ensure_vector_index(conn, dims)
        self._indexed_dims.add(dims)

    async def remove_file(self, vector_store_id: str, file_id: str) -> int:
        """Deletes a file's chunks from one store; returns how many were deleted."""
        async with self._db.session() as session:
            conn = await session.connection()
            result = await conn.execute(
                delete(_TABLE).where(*_file_filter(vector_store_id, file_id))
            )
        self._forget(vector_store_id)
        return int(result.rowcount or 0)

    async def remove_store(self, vector_store_id: str) -> int:
        """Deletes every chunk of a store; returns how many were deleted."""
        async with self._db.session() as session:
            conn = await session.connection()
            result = await conn.execute(
                delete(_TABLE).where(col(ChunkRow.vector_store_id) == vector_store_id)
            )
        self._forget(vector_store_id)
        return int(result.rowcount or 0)

    async def file_chunks(self, vector_store_id: str, file_id: str) -> list[str]:
        """The texts of a file's chunks in one store, in order."""
        async with self._db.session() as session:
            conn = await session.connection()
            result = await conn.execute(
                text(
                    "SELECT text FROM chunk WHERE vector_store_id = :v AND file_id = :f "
                    "ORDER BY chunk_index"
                ),
                {"v": vector_store_id, "f": file_id},
            )
            return [row[0] for row in result]

    async def _embed_chunks(self, chunks: Sequence[Chunk]) -> list[tuple[bytes, int]]:
        assert self.embedder is not None
        limit = self.embedder.max_input_tokens
        windows = await asyncio.to_thread(_windows, chunks, limit)
        flat = [w for group in windows for w in group]
        vectors = await self.embedder.embed(flat) if flat else []
        if len(vectors) != len(flat):
            raise ValueError(f"embedder returned {len(vectors)} vectors for {len(flat)} texts")
        return await asyncio.to_thread(_pack, windows, vectors)

    # -- searching ----------------------------------------------------------------------------

    async def search(
        self,
        vector_store_ids: Sequence[str],
        query: str,
        *,
        max_results: int = 20,
        score_threshold: float = 0.0,
        mode: Mode = "hybrid",
    ) -> list[Hit]:
        """The best chunks for `query` in the given stores (and no others), best first."""
        if mode not in ("hybrid", "bm25", "dense"):
            raise ValueError(f"unknown search mode {mode!r}")
        if mode == "dense" and self.embedder is None:
            raise ValueError("dense search needs an embedder")
        ids = list(dict.fromkeys(vector_store_ids))
        if not ids or not query.strip() or max_results < 1:
            return []
        wanted = max(self._candidates, max_results * 2)
        use_bm25 = mode in ("hybrid", "bm25")
        use_dense = mode in ("hybrid", "dense") and self.embedder is not None

        if use_dense and await self.dense_path() == "pgvector":
            keyword, dense = await self._search_pgvector(ids, query, wanted, use_bm25)
            blend = use_bm25 and bool(dense)
        else:
            keyword, (vectors, qvec) = await asyncio.gather(
                self._bm25(ids, query, wanted) if use_bm25 else _no_keywords(),
                self._query_vectors(ids, query) if use_dense else _no_vectors(),
            )
            dense = {}
            if vectors:
                # With a blend, every BM25 candidate also gets its exact dense score.
                extra = list(keyword) if use_bm25 and self._fusion == "blend" else []
                dense = await asyncio.to_thread(_cosine_top, vectors, qvec, wanted, extra)
            blend = use_bm25 and bool(vectors)
        if blend:
            if self._fusion == "rrf":
                scores = _rrf(keyword, dense)
            else:
                w = self._dense_weight
                scores = {
                    seq: w * dense.get(seq, 0.0) + (1 - w) * keyword.get(seq, 0.0)
                    for seq in keyword.keys() | dense.keys()
                }
        else:
            scores = keyword or dense
        ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
        ranked = [(seq, score) for seq, score in ranked if score >= score_threshold]
        return await self._hits(ids, ranked[:max_results])

    async def _search_pgvector(
        self, ids: list[str], query: str, wanted: int, use_bm25: bool
    ) -> tuple[dict[int, float], dict[int, float]]:
        assert self.embedder is not None
        embedder = self.embedder

        async def dense_top() -> tuple[list[float], dict[int, float]]:
            (qvec,) = await embedder.embed([query])
            return qvec, await self._pg_dense(ids, qvec, wanted)

        keyword, (qvec, dense) = await asyncio.gather(
            self._bm25(ids, query, wanted) if use_bm25 else _no_keywords(), dense_top()
        )
        if dense and use_bm25 and self._fusion == "blend":
            # With a blend, every BM25 candidate also gets its exact dense score.
            missing = [seq for seq in keyword if seq not in dense]
            dense.update(await self._pg_cosines(ids, qvec, missing))
        return keyword, dense

    async def _pg_dense(self, ids: list[str], qvec: list[float], limit: int) -> dict[int, float]:
        """Cosine of the top `limit` chunks by their best window, from the HNSW index
        (`ORDER BY embedding <=> query LIMIT n` over windows)."""
        found = _PgVectorQuery.of(self, ids, qvec)
        if found is None:
            return {}
        statement = text(
            f"SELECT seq, min(d), count(*) FROM (SELECT seq, {found.distance} AS d "
            f"FROM chunk_vec WHERE {found.where} ORDER BY d LIMIT :n) w GROUP BY seq"
        ).bindparams(bindparam("ids", expanding=True))
        async with self._db.session() as session:
            conn = await session.connection()
            # Windows, not chunks, come out of the index: ask for more until `limit` distinct
            # chunks (or every window) came back.
            n = 2 * limit
            while True:
                await conn.execute(_PG_HNSW_SETTINGS, {"ef": str(min(1000, max(100, n)))})
                rows = (await conn.execute(statement, {**found.params, "n": n})).all()
                windows = sum(int(count) for _, _, count in rows)
                if len(rows) >= limit or windows < n or n >= 64 * limit:
                    break
                n *= 4
        return {int(seq): _similarity(d) for seq, d, _ in rows}

    async def _pg_cosines(
        self, ids: list[str], qvec: list[float], seqs: list[int]
    ) -> dict[int, float]:
        """Exact cosine of the given chunks (best window), straight from `chunk_vec`."""
        found = _PgVectorQuery.of(self, ids, qvec)
        if found is None or not seqs:
            return {}
        statement = text(
            f"SELECT seq, min({found.distance}) FROM chunk_vec "
            f"WHERE seq IN :seqs AND {found.where} GROUP BY seq"
        ).bindparams(bindparam("ids", expanding=True), bindparam("seqs", expanding=True))
        async with self._db.session() as session:
            conn = await session.connection()
            rows = (await conn.execute(statement, {**found.params, "seqs": seqs})).all()
        return {int(seq): _similarity(d) for seq, d in rows}

    async def _bm25(self, ids: list[str], query: str, limit: int) -> dict[int, float]:
        terms = _terms(query)
        if not terms:
            return {}
        if self._db.is_sqlite:
            statement = text(
                "SELECT chunk.seq, -bm25(chunk_fts, 1.0, 0.5) AS s FROM chunk_fts "
                "JOIN chunk ON chunk.seq = chunk_fts.rowid "
                "WHERE chunk_fts MATCH :q AND chunk.vector_store_id IN :ids "
                "ORDER BY bm25(chunk_fts, 1.0, 0.5) LIMIT :n"
            ).bindparams(bindparam("ids", expanding=True))
            match = " OR ".join(f'"{term}"' for term in terms)
        else:
            statement = _PG_BM25.bindparams(bindparam("ids", expanding=True))
            match = query
        async with self._db.session() as session:
            conn = await session.connection()
            params = {"q": match, "ids": ids, "n": limit, "m": 2 * limit}
            result = await conn.execute(statement, params)
            rows = result.all()
        return {int(seq): float(s) / (float(s) + BM25_HALF) for seq, s in rows if s > 0}

    async def _query_vectors(
        self, ids: list[str], query: str
    ) -> tuple[list[_Vectors], list[float]]:
        assert self.embedder is not None
        vectors = [v for v in await self._vectors(ids) if len(v.seqs)]
        if not vectors:
            return [], []
        (qvec,) = await self.embedder.embed([query])
        return vectors, qvec

    async def _vectors(self, ids: list[str]) -> list[_Vectors]:
        assert self.embedder is not None
        name = self.embedder.name
        versions = await self._versions(ids)
        found: list[_Vectors] = []
        async with self._load_lock:
            for store in ids:
                version = versions.get(store)
                if version is None:
                    self._cache.pop((store, name), None)
                    continue
                cached = self._cache.get((store, name))
                if cached is None or cached.version != version:
                    cached = await self._load(store, name)
                    self._remember((store, name), cached)
                else:
                    self._cache.move_to_end((store, name))
                found.append(cached)
        return found

    async def _versions(self, ids: list[str]) -> dict[str, tuple[int, int]]:
        statement = text(
            "SELECT vector_store_id, count(*), max(seq) FROM chunk "
            "WHERE vector_store_id IN :ids GROUP BY vector_store_id"
        ).bindparams(bindparam("ids", expanding=True))
        async with self._db.session() as session:
            conn = await session.connection()
            rows = (await conn.execute(statement, {"ids": ids})).all()
        return {store: (int(count), int(top)) for store, count, top in rows}

    async def _load(self, store: str, name: str) -> _Vectors:
        async with self._db.session() as session:
            conn = await session.connection()
            rows = (
                await conn.execute(
                    text(
                        "SELECT seq, embedding, embedding_dims, embedding_model FROM chunk "
                        "WHERE vector_store_id = :v ORDER BY seq"
                    ),
                    {"v": store},
                )
            ).all()
        vectors = await asyncio.to_thread(_unpack, rows, name)
        skipped = len(rows) - len(vectors.seqs)
        if skipped:
            log.warning(
                "retrieval: %d chunks of %s have no %s vectors; they are found by BM25 only",
                skipped,
                store,
                name,
            )
        return vectors

    def _remember(self, key: tuple[str, str], vectors: _Vectors) -> None:
        self._cache[key] = vectors
        self._cache.move_to_end(key)
        total = sum(v.nbytes for v in self._cache.values())
        while total > self._cache_bytes and self._cache:
            _, dropped = self._cache.popitem(last=False)
            total -= dropped.nbytes

    def _forget(self, vector_store_id: str) -> None:
        for key in [k for k in self._cache if k[0] == vector_store_id]:
            del self._cache[key]

    async def _hits(self, ids: list[str], ranked: list[tuple[int, float]]) -> list[Hit]:
        if not ranked:
            return []
        statement = text(
            "SELECT seq, vector_store_id, file_id, filename, chunk_index, page, text FROM chunk "
            "WHERE seq IN :seqs AND vector_store_id IN :ids"
        ).bindparams(bindparam("seqs", expanding=True), bindparam("ids", expanding=True))
        async with self._db.session() as session:
            conn = await session.connection()
            rows = (
                await conn.execute(statement, {"seqs": [s for s, _ in ranked], "ids": ids})
            ).all()
        by_seq = {row[0]: row for row in rows}
        hits: list[Hit] = []
        for seq, score in ranked:
            row = by_seq.get(seq)
            if row is None:  # deleted meanwhile
                continue
            hits.append(
                Hit(
                    file_id=row[2],
                    filename=row[3],
                    chunk_index=row[4],
                    page=row[5],
                    text=row[6],
                    score=round(min(1.0, max(0.0, score)), 6),
                    vector_store_id=row[1],
                )
            )
        return hits


# -- helpers (pure, run in threads where heavy) -----------------------------------------------


@dataclass(frozen=True, slots=True)
class _PgVectorQuery:
    """The pieces of a `chunk_vec` query for one query vector: filters and distance."""

    where: str
    distance: str
    params: dict[str, Any]

    @staticmethod
    def of(index: ChunkIndex, ids: list[str], qvec: list[float]) -> _PgVectorQuery | None:
        assert index.embedder is not None
        query = np.asarray(qvec, dtype=np.float32)
        if not query.size or not np.isfinite(query).all() or not np.linalg.norm(query):
            return None
        column = vector_column(query.shape[0])
        return _PgVectorQuery(
            # dims is a literal so that PostgreSQL can match the partial index's predicate.
            where=f"dims = {column.dims} AND embedding_model = :m AND vector_store_id IN :ids",
            # A subquery: parsed once, also where psycopg's prepared (generic) plan would
            # otherwise cast the text per row.
            distance=f"{column.expression} <=> (SELECT CAST(:q AS {column.cast}))",
            params={"q": vector_literal(query.tolist()), "m": index.embedder.name, "ids": ids},
        )


def _similarity(distance: float) -> float:
    # Cosine distance is 1 - similarity; NaN (a zero vector) counts as unrelated.
    d = float(distance)
    return 0.0 if d != d else min(1.0, max(0.0, 1.0 - d))


async def _no_keywords() -> dict[int, float]:
    return {}


async def _no_vectors() -> tuple[list[_Vectors], list[float]]:
    return [], []


def _file_filter(vector_store_id: str, file_id: str) -> tuple[Any, Any]:
    return (
        col(ChunkRow.vector_store_id) == vector_store_id,
        col(ChunkRow.file_id) == file_id,
    )


# Per transaction: candidates the HNSW scan keeps (pgvector's default 40 is below our limits),
# and iterative scans, so that the store and model filters cannot starve a LIMIT (pgvector 0.8).
_PG_HNSW_SETTINGS = text(
    "SELECT set_config('hnsw.ef_search', :ef, true), "
    "set_config('hnsw.iterative_scan', 'strict_order', true)"
)

# BM25 on PostgreSQL, which has no IDF (ts_rank and ts_rank_cd count matches only). Query
# lexemes come from the same parser as the documents'. Which chunk holds which term comes from
# the GIN index, one lookup per term (`hits`: no tsvector is read); per term, `ts_rank` of that
# term alone (0.61 for one occurrence, rising towards 1) stands in for BM25's term frequency,
# weighted by the term's IDF in the searched stores and normalised by chunk length like BM25
# (k1 = 1.2, b = 0.75; `k` below). Text counts fully, the filename half (label weights
# {D, C, B, A}).
# Reading a chunk's tsvector for ts_rank is the expensive part, so it is done only where it can
# matter, without changing the result: with ts_rank below 1, a chunk scores less than its bound
# `ub` (every matched term at tf 1). The `:m` chunks with the highest bounds are scored first;
# the `:n`-th best of those scores (`theta`) is a floor for the final `:n`-th, so only chunks
# whose bound reaches it are scored too (typically a tenth of the matches in a 10k store).
_PG_BM25 = text(
    """
    WITH terms AS (
        SELECT lexeme, quote_literal(lexeme)::tsquery AS tq
        FROM unnest(to_tsvector('english', :q)) LIMIT 64
    ), hits AS MATERIALIZED (
        SELECT t.lexeme, c.seq, c.tokens
        FROM terms t CROSS JOIN LATERAL (
            SELECT seq, tokens FROM chunk WHERE tsv @@ t.tq AND vector_store_id IN :ids
        ) c
    ), stats AS MATERIALIZED (
        SELECT (SELECT count(*) FROM chunk WHERE vector_store_id IN :ids) AS total,
               greatest(avg(tokens), 1)::float8 AS avgdl
        FROM (SELECT DISTINCT ON (seq) tokens FROM hits) d
    ), idf AS MATERIALIZED (
        SELECT h.lexeme,
               greatest(ln((s.total - count(*) + 0.5) / (count(*) + 0.5)), 1e-6)::float8 AS w
        FROM hits h CROSS JOIN stats s GROUP BY h.lexeme, s.total
    ), weighted AS MATERIALIZED (
        SELECT h.seq, h.lexeme, i.w, 1.2 * (0.25 + 0.75 * h.tokens / s.avgdl) AS k
        FROM hits h JOIN idf i ON i.lexeme = h.lexeme CROSS JOIN stats s
    ), bounds AS MATERIALIZED (
        SELECT seq, sum(w * 2.2 / (1 + k)) AS ub FROM weighted GROUP BY seq
    ), first AS MATERIALIZED (
        SELECT seq FROM bounds ORDER BY ub DESC, seq LIMIT :m
    ), scored_first AS MATERIALIZED (
        SELECT x.seq, sum(x.w * r.tf * 2.2 / (r.tf + x.k)) AS score
        FROM first f JOIN weighted x ON x.seq = f.seq JOIN terms t ON t.lexeme = x.lexeme
        JOIN chunk c ON c.seq = f.seq
        CROSS JOIN LATERAL (SELECT ts_rank('{0.5, 0.2, 0.4, 1.0}', c.tsv, t.tq, 0) AS tf) r
        GROUP BY x.seq
    ), theta AS (
        SELECT coalesce(
            (SELECT score FROM scored_first ORDER BY score DESC OFFSET :n - 1 LIMIT 1),
            'Infinity'
        ) AS v
    ), scored_rest AS (
        SELECT x.seq, sum(x.w * r.tf * 2.2 / (r.tf + x.k)) AS score
        FROM bounds b CROSS JOIN theta JOIN weighted x ON x.seq = b.seq
        JOIN terms t ON t.lexeme = x.lexeme JOIN chunk c ON c.seq = b.seq
        CROSS JOIN LATERAL (SELECT ts_rank('{0.5, 0.2, 0.4, 1.0}', c.tsv, t.tq, 0) AS tf) r
        WHERE b.ub >= theta.v AND b.seq NOT IN (SELECT seq FROM first)
        GROUP BY x.seq
    )
    SELECT seq, score FROM (SELECT * FROM scored_first UNION ALL SELECT * FROM scored_rest) a
    ORDER BY score DESC, seq LIMIT :n
    """
)

# Words too common to help a keyword search (kept when a query has nothing else).
_STOPWORDS = frozenset(
    "a an and are as at be but by can could do does for from had has have how i if in into is "
    "it its me my of on or our should so than that the their them then there these they this "
    "to was we were what when where which who whom why will with would you your".split()
)
_TOKEN = re.compile(r"\w+")


def _terms(query: str) -> list[str]:
    tokens = list(dict.fromkeys(t.lower() for t in _TOKEN.findall(query)))
    kept = [t for t in tokens if t not in _STOPWORDS]
    return (kept or tokens)[:_MAX_TERMS]


def _windows(chunks: Sequence[Chunk], limit: int | None) -> list[list[str]]:
    windows: list[list[str]] = []
    for chunk in chunks:
        if limit is None or chunk.tokens <= limit:
            windows.append([chunk.text])
        else:
            parts = chunk_pages([Page(None, chunk.text)], max_tokens=limit, overlap=limit // 4)
            windows.append([p.text for p in parts] or [chunk.text])
    return windows


def _pack(windows: list[list[str]], vectors: list[list[float]]) -> list[tuple[bytes, int]]:
    packed: list[tuple[bytes, int]] = []
    i = 0
    for group in windows:
        array = np.asarray(vectors[i : i + len(group)], dtype=np.float32)
        i += len(group)
        norms = np.linalg.norm(array, axis=1, keepdims=True)
        unit = array / np.where(norms == 0, 1, norms)
        packed.append((unit.astype("<f4").tobytes(), int(unit.shape[1])))
    return packed


def _unpack(rows: Sequence[Any], name: str) -> _Vectors:
    seqs: list[int] = []
    counts: list[int] = []
    blocks: list[np.ndarray[Any, np.dtype[np.float32]]] = []
    dims = 0
    versions = (len(rows), max((int(r[0]) for r in rows), default=0))
    for seq, blob, d, model in rows:
        if model != name or not blob or not d or (dims and d != dims):
            continue
        dims = int(d)
        block = np.frombuffer(blob, dtype="<f4").reshape(-1, dims)
        seqs.append(int(seq))
        counts.append(block.shape[0])
        blocks.append(block)
    matrix = np.vstack(blocks).astype(np.float32) if blocks else np.zeros((0, 0), np.float32)
    starts = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    return _Vectors(
        version=versions,
        seqs=np.asarray(seqs, dtype=np.int64),
        starts=starts,
        matrix=matrix,
    )


def _cosine_top(
    stores: list[_Vectors], qvec: list[float], limit: int, extra: list[int]
) -> dict[int, float]:
    """Cosine of the top `limit` chunks, plus that of the chunks in `extra`."""
    query = np.asarray(qvec, dtype=np.float32)
    norm = float(np.linalg.norm(query))
    if norm == 0:
        return {}
    query /= norm
    all_seqs: list[np.ndarray[Any, Any]] = []
    all_scores: list[np.ndarray[Any, Any]] = []
    for vectors in stores:
        if not len(vectors.seqs) or vectors.matrix.shape[1] != query.shape[0]:
            continue
        sims = vectors.matrix @ query
        # Best window per chunk; chunk i's windows are rows starts[i]:starts[i+1].
        per_chunk = np.maximum.reduceat(sims, vectors.starts[:-1])
        all_seqs.append(vectors.seqs)
        all_scores.append(per_chunk)
    if not all_seqs:
        return {}
    seqs = np.concatenate(all_seqs)
    scores = np.clip(np.concatenate(all_scores), 0.0, 1.0)
    if limit < len(scores):
        top = np.argpartition(-scores, limit)[:limit]
    else:
        top = np.arange(len(scores))
    found = {int(seqs[i]): float(scores[i]) for i in top}
    if extra:
        mask = np.isin(seqs, np.asarray(extra, dtype=np.int64))
        found.update((int(s), float(v)) for s, v in zip(seqs[mask], scores[mask], strict=True))
    return found


def _rrf(*rankings: dict[int, float]) -> dict[int, float]:
    lists = [r for r in rankings if r]
    if not lists:
        return {}
    fused: dict[int, float] = {}
    for ranking in lists:
        ordered = sorted(ranking.items(), key=lambda item: (-item[1], item[0]))
        for rank, (seq, _) in enumerate(ordered, start=1):
            fused[seq] = fused.get(seq, 0.0) + 1.0 / (RRF_K + rank)
    best = len(lists) / (RRF_K + 1)
    return {seq: value / best for seq, value in fused.items()}
