"""Retrieval tables: the chunks of vector store files, with their full-text index and vectors.

`chunk` is a normal SQLModel table. What `SQLModel.metadata.create_all` cannot make comes from
`create_retrieval_schema` (idempotent; run it after `create_all` at every start):

- SQLite: `chunk_fts`, an FTS5 external-content table over `chunk.text` and `chunk.filename`
  (`porter unicode61` tokenizer, rowid = `chunk.seq`), kept in sync by triggers on insert,
  update and delete, so every writer (ORM, bulk SQL) keeps it right.
- PostgreSQL: `chunk.tsv`, a stored generated `tsvector` (English configuration; text weighted
  A, filename D) with a GIN index.

`seq` only grows (AUTOINCREMENT on SQLite, a sequence on PostgreSQL): search caches use
`(count(*), max(seq))` of a store as its version. Embeddings are little-endian float32 bytes:
one or more windows of `embedding_dims` values each, L2-normalised, from `embedding_model`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Index, LargeBinary, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

if TYPE_CHECKING:  # storage.database imports this module to register the table
    from storage.database import Database

__all__ = ["ChunkRow", "create_retrieval_schema"]


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

# A constant key: concurrent starts of several processes take turns adding the column.
_PG_LOCK = 0x636E6B  # "cnk"
_PG = (
    f"SELECT pg_advisory_xact_lock({_PG_LOCK})",
    "ALTER TABLE chunk ADD COLUMN IF NOT EXISTS tsv tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('english', coalesce(text, '')), 'A') || "
    "setweight(to_tsvector('english', coalesce(filename, '')), 'D')) STORED",
    "CREATE INDEX IF NOT EXISTS ix_chunk_tsv ON chunk USING GIN (tsv)",
)


async def create_retrieval_schema(db: Database) -> None:
    """Creates the chunk table (if missing) and its full-text index; safe to run every start."""
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
        else:
            for statement in _PG:
                await conn.execute(text(statement))
