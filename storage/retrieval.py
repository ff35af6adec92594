"""Retrieval tables: the chunks of vector store files, with their full-text index and vectors.

`chunk` is a normal SQLModel table (made by the migrations). What depends on the server comes
from `create_retrieval_schema` (idempotent; `Database.upgrade` runs it at every start):

- SQLite: `chunk_fts`, an FTS5 external-content table over `chunk.text` and `chunk.filename`
  (`porter unicode61` tokenizer, rowid = `chunk.seq`), kept in sync by triggers on insert,
  update and delete, so every writer (ORM, bulk SQL) keeps it right.
- PostgreSQL: `chunk.tsv`, a stored generated `tsvector` (English configuration; text weighted
  A, filename D) with a GIN index.
- PostgreSQL with pgvector 0.8 or newer available: the `vector` extension and `chunk_vec`, one
  row per embedding window (`seq`, `part`, the chunk's store, model and dims, `embedding` of
  type `vector` without fixed dimensions), deleted with its chunk (`ON DELETE CASCADE`). Each
  dimension in use gets a partial HNSW index (`vector_cosine_ops`) on `embedding` cast to that
  dimension (`vector_column`), made when the first vectors of that dimension are stored
  (`ensure_vector_index`). Chunks embedded before `chunk_vec` existed are filled in here.

`seq` only grows (AUTOINCREMENT on SQLite, a sequence on PostgreSQL): search caches use
`(count(*), max(seq))` of a store as its version. Embeddings are little-endian float32 bytes:
one or more windows of `embedding_dims` values each, L2-normalised, from `embedding_model`.
Everything made here beside `chunk` has `vec`, `fts` or `tsv` in its name (migrations skip them).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Index, LargeBinary, Text, UniqueConstraint, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import Field, SQLModel

if TYPE_CHECKING:  # storage.database imports this module to register the table
    from storage.database import Database

__all__ = [
    "PGVECTOR_MIN_VERSION",
    "ChunkRow",
    "VectorColumn",
    "create_retrieval_schema",
    "ensure_vector_index",
    "pgvector_version",
    "store_vectors",
    "vector_column",
    "vector_literal",
]

log = logging.getLogger("storage.retrieval")

#: Oldest pgvector used: filtered HNSW scans need its iterative index scans (0.8.0).
PGVECTOR_MIN_VERSION = (0, 8, 0)


class ChunkRow(SQLModel, table=True):
    __tablename__ = "chunk"
    __table_args__ = (
        UniqueConstraint("vector_store_id", "file_id", "chunk_index"),
        Index("ix_chunk_file_id", "file_id"),
        {"sqlite_autoincrement": True},
    )

    seq: int | None = Field(default=None, primary_key=True)
    vector_store_id: str = Field(max_length=64)
    file_id: str = Field(max_length=64)
    filename: str
    chunk_index: int
    page: int | None = None
    text: str = Field(sa_type=Text)
    tokens: int = 0
    embedding: bytes | None = Field(default=None, sa_type=LargeBinary)
    embedding_model: str | None = Field(default=None, max_length=200)
    embedding_dims: int | None = None


_SQLITE = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS chunk_fts USING fts5("
    "text, filename, content='chunk', content_rowid='seq', "
    "tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS chunk_fts_insert AFTER INSERT ON chunk BEGIN "
    "INSERT INTO chunk_fts(rowid, text, filename) VALUES (new.seq, new.text, new.filename); "
    "END",
    "CREATE TRIGGER IF NOT EXISTS chunk_fts_delete AFTER DELETE ON chunk BEGIN "
    "INSERT INTO chunk_fts(chunk_fts, rowid, text, filename) "
    "VALUES ('delete', old.seq, old.text, old.filename); "
    "END",
    "CREATE TRIGGER IF NOT EXISTS chunk_fts_update AFTER UPDATE OF text, filename ON chunk "
    "BEGIN "
    "INSERT INTO chunk_fts(chunk_fts, rowid, text, filename) "
    "VALUES ('delete', old.seq, old.text, old.filename); "
    "INSERT INTO chunk_fts(rowid, text, filename) VALUES (new.seq, new.text, new.filename); "
    "END",
)

# A constant key: concurrent starts (and first writes of a new dimension) of several processes
# take turns changing the schema.
_PG_LOCK = 0x636E6B  # "cnk"
_PG = (
    "ALTER TABLE chunk ADD COLUMN IF NOT EXISTS tsv tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('english', coalesce(text, '')), 'A') || "
    "setweight(to_tsvector('english', coalesce(filename, '')), 'D')) STORED",
    "CREATE INDEX IF NOT EXISTS ix_chunk_tsv ON chunk USING GIN (tsv)",
)
_PG_VEC = (
    "CREATE TABLE IF NOT EXISTS chunk_vec ("
    "seq integer NOT NULL REFERENCES chunk (seq) ON DELETE CASCADE, "
    "part integer NOT NULL, "
    "vector_store_id varchar(64) NOT NULL, "
    "embedding_model varchar(200) NOT NULL, "
    "dims integer NOT NULL, "
    "embedding vector NOT NULL, "
    "CONSTRAINT chunk_vec_pkey PRIMARY KEY (seq, part))",
    "CREATE INDEX IF NOT EXISTS ix_chunk_vec_store ON chunk_vec (vector_store_id, dims)",
)
# HNSW indexes `vector` up to 2,000 dimensions and `halfvec` (16-bit floats) up to 4,000.
_HNSW_MAX = (("vector", "vector_cosine_ops", 2000), ("halfvec", "halfvec_cosine_ops", 4000))
_BACKFILL_BATCH = 256


@dataclass(frozen=True, slots=True)
class VectorColumn:
    """How vectors of one dimension are compared: `expression <=> <query vector as cast>`.

    Queries must spell `expression` and filter `dims = <dims>` (literals, not parameters) for
    PostgreSQL to use the partial index `index`; `opclass` is None past HNSW's limits (exact
    scan, no index).
    """

    dims: int
    expression: str
    cast: str
    opclass: str | None
    index: str


def vector_column(dims: int) -> VectorColumn:
    dims = int(dims)  # goes into SQL text
    if dims < 1:
        raise ValueError(f"bad vector dimensions {dims}")
    for kind, opclass, most in _HNSW_MAX:
        if dims <= most:
            cast = f"{kind}({dims})"
            return VectorColumn(dims, f"(embedding::{cast})", cast, opclass, _index_name(dims))
    return VectorColumn(dims, "embedding", "vector", None, _index_name(dims))


def vector_literal(values: Iterable[float]) -> str:
    """pgvector's text form, `[1,2.5,...]` (9 significant digits: float32 exactly)."""
    numbers = tuple(values)
    return _literal_format(len(numbers)) % numbers


@functools.cache
def _literal_format(dims: int) -> str:
    return "[" + ",".join(["%.9g"] * dims) + "]"  # one % for all: twice as fast as a join


def _index_name(dims: int) -> str:
    return f"ix_chunk_vec_hnsw_{dims}"


def _vector_rows(chunks: Sequence[tuple[int, str, str, int, bytes]]) -> list[dict[str, Any]]:
    return [
        {"seq": seq, "part": part, "v": store, "m": model, "d": dims, "e": vector_literal(w)}
        for seq, store, model, dims, blob in chunks
        for part, w in enumerate(_windows(blob, dims))
    ]


def _windows(blob: bytes, dims: int) -> list[array[float]]:
    values = array("f", blob)
    if sys.byteorder != "little":
        values.byteswap()
    return [values[i : i + dims] for i in range(0, len(values), dims)]


async def pgvector_version(conn: AsyncConnection) -> str | None:
    """The pgvector version when this PostgreSQL database searches vectors in SQL, else None.

    That is when `chunk_vec` exists and the extension is at least `PGVECTOR_MIN_VERSION`.
    """
    if conn.dialect.name != "postgresql":
        return None
    row = (
        await conn.execute(
            text(
                "SELECT to_regclass('chunk_vec') IS NOT NULL, "
                "(SELECT extversion FROM pg_extension WHERE extname = 'vector')"
            )
        )
    ).one()
    found, version = bool(row[0]), row[1]
    return version if found and version and _version(version) >= PGVECTOR_MIN_VERSION else None


async def ensure_vector_index(conn: AsyncConnection, dims: int) -> None:
    """Makes the HNSW index for vectors of `dims` dimensions unless it exists (PostgreSQL)."""
    column = vector_column(dims)
    if column.opclass is None:
        return
    check = text("SELECT to_regclass(:name) IS NOT NULL").bindparams(name=column.index)
    if (await conn.execute(check)).scalar_one():
        return
    await conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_LOCK})"))
    await conn.execute(
        text(
            f"CREATE INDEX IF NOT EXISTS {column.index} ON chunk_vec "
            f"USING hnsw ({column.expression} {column.opclass}) WHERE dims = {column.dims}"
        )
    )


async def store_vectors(
    conn: AsyncConnection, chunks: Sequence[tuple[int, str, str, int, bytes]]
) -> int:
    """Writes the window vectors of chunks `(seq, vector_store_id, model, dims, embedding)`
    into `chunk_vec` (rows already there are kept); returns how many windows it wrote."""
    rows = await asyncio.to_thread(_vector_rows, chunks)  # formatting is CPU work
    if rows:
        await conn.execute(
            text(
                "INSERT INTO chunk_vec (seq, part, vector_store_id, embedding_model, dims, "
                "embedding) VALUES (:seq, :part, :v, :m, :d, CAST(:e AS vector)) "
                "ON CONFLICT (seq, part) DO NOTHING"
            ),
            rows,
        )
    return len(rows)


async def create_retrieval_schema(db: Database, *, pgvector: bool = True) -> None:
    """Creates the chunk table (if missing) and its full-text index; safe to run every start.

    On PostgreSQL with pgvector available (and `pgvector` true) it also creates the extension
    and `chunk_vec`, and fills in the vectors of chunks that have none there yet. With
    `pgvector=False` a database that lacks `chunk_vec` keeps lacking it (search stays portable).
    """
    table = SQLModel.metadata.tables[ChunkRow.__tablename__]
    async with db.engine.begin() as conn:
        await conn.run_sync(lambda sync: table.create(sync, checkfirst=True))
        if db.is_sqlite:
            existed = (
                await conn.execute(
                    text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'chunk_fts'")
                )
            ).first() is not None
            for statement in _SQLITE:
                await conn.execute(text(statement))
            if not existed:  # rows written before the index existed get indexed now
                await conn.execute(text("INSERT INTO chunk_fts(chunk_fts) VALUES ('rebuild')"))
            return
        await conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_LOCK})"))
        for statement in _PG:
            await conn.execute(text(statement))
        if pgvector and await _create_pgvector(conn):
            await _backfill(conn)


async def _create_pgvector(conn: AsyncConnection) -> bool:
    """Creates the extension and `chunk_vec` if pgvector is new enough; True if usable."""
    available = (
        await conn.execute(
            text(
                "SELECT default_version, installed_version FROM pg_available_extensions "
                "WHERE name = 'vector'"
            )
        )
    ).first()
    if available is None:
        return False
    version = available[1] or available[0]
    if _version(version) < PGVECTOR_MIN_VERSION:
        log.warning("pgvector %s is older than 0.8.0; vector search stays in Python", version)
        return False
    if available[1] is None:
        try:
            async with conn.begin_nested():
                await conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        except DBAPIError as exc:  # e.g. not allowed: the extension is not trusted
            log.warning(
                "pgvector is installed but CREATE EXTENSION vector failed (%s); vector search "
                "stays in Python until a superuser runs it",
                str(exc.orig).strip().splitlines()[0] if exc.orig else exc,
            )
            return False
    for statement in _PG_VEC:
        await conn.execute(text(statement))
    return True


async def _backfill(conn: AsyncConnection) -> None:
    """Fills `chunk_vec` for chunks with an embedding but no vectors there (written before
    pgvector came, or by a process that did not write them), then indexes their dimensions."""
    after, total, dims_seen = 0, 0, set[int]()
    select = text(
        "SELECT c.seq, c.vector_store_id, c.embedding_model, c.embedding_dims, c.embedding "
        "FROM chunk c WHERE c.seq > :after AND c.embedding IS NOT NULL "
        "AND c.embedding_dims > 0 AND c.embedding_model IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM chunk_vec v WHERE v.seq = c.seq) "
        "ORDER BY c.seq LIMIT :n"
    )
    while True:
        rows = (await conn.execute(select, {"after": after, "n": _BACKFILL_BATCH})).all()
        if not rows:
            break
        total += await store_vectors(conn, [(r[0], r[1], r[2], r[3], r[4]) for r in rows])
        dims_seen.update(int(row[3]) for row in rows)
        after = int(rows[-1][0])
    for dims in sorted(dims_seen):
        await ensure_vector_index(conn, dims)
    if total:
        log.info("pgvector: filled %d window vectors of chunks embedded before", total)


def _version(value: str) -> tuple[int, ...]:
    parts = []
    for piece in value.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)
