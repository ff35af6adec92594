"""File and vector store tables (the blobs themselves live under DATA_DIR/files)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

__all__ = ["FileBatchRow", "FileRow", "VectorStoreFileRow", "VectorStoreRow"]


class FileRow(SQLModel, table=True):
    __tablename__ = "file"

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True, index=True, max_length=64)
    created_at: int
    filename: str
    purpose: str = Field(index=True)
    bytes: int
    sha256: str = Field(max_length=64)
    mimetype: str | None = None
    #: Where the file came from, when not an upload (e.g. "thread_X" for sandbox output).
    source: str | None = Field(default=None, index=True, max_length=64)


class VectorStoreRow(SQLModel, table=True):
    __tablename__ = "vector_store"

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True, index=True, max_length=64)
    created_at: int
    name: str = ""
    meta: dict[str, str] = Field(default_factory=dict, sa_column=Column("metadata", JSON))
    expires_after: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    expires_at: int | None = None
    last_active_at: int | None = None
    expired: bool = False
    #: Set for stores the engine made from message attachments (one per thread).
    thread_id: str | None = Field(default=None, index=True, max_length=64)


class VectorStoreFileRow(SQLModel, table=True):
    __tablename__ = "vector_store_file"
    __table_args__ = (UniqueConstraint("vector_store_id", "file_id"),)

    seq: int | None = Field(default=None, primary_key=True)
    vector_store_id: str = Field(index=True, max_length=64)
    file_id: str = Field(index=True, max_length=64)
    batch_id: str | None = Field(default=None, index=True, max_length=64)
    created_at: int
    status: str = "in_progress"  # in_progress | completed | failed | cancelled
    usage_bytes: int = 0
    last_error: dict[str, str] | None = Field(default=None, sa_type=JSON)
    chunking_strategy: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    attributes: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    #: The process indexing the file and its lease (Unix seconds), as for runs: a lapsed
    #: lease means that process stopped, and another indexes the file.
    worker_id: str | None = Field(default=None, max_length=64)
    lease_expires_at: float | None = None


class FileBatchRow(SQLModel, table=True):
    __tablename__ = "vector_store_batch"

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True, index=True, max_length=64)
    vector_store_id: str = Field(index=True, max_length=64)
    created_at: int
    cancelled: bool = False
