"""Request bodies of the vector store operations, with the hosted bounds."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from assistants.params import _Params, _WithMetadata

__all__ = [
    "ChunkingStrategy",
    "FileBatchCreate",
    "VectorStoreCreate",
    "VectorStoreFileCreate",
    "VectorStoreSearch",
    "VectorStoreUpdate",
]


class ExpiresAfter(_Params):
    anchor: Literal["last_active_at"]
    days: int = Field(ge=1, le=365)


class StaticChunking(_Params):
    max_chunk_size_tokens: int = Field(ge=100, le=4096)
    chunk_overlap_tokens: int = Field(ge=0)

    @model_validator(mode="after")
    def _overlap_at_most_half(self) -> StaticChunking:
        if self.chunk_overlap_tokens > self.max_chunk_size_tokens // 2:
            raise ValueError("chunk_overlap_tokens must not exceed half of max_chunk_size_tokens")
        return self


class AutoStrategy(_Params):
    type: Literal["auto"]


class StaticStrategy(_Params):
    type: Literal["static"]
    static: StaticChunking


ChunkingStrategy = Annotated[AutoStrategy | StaticStrategy, Field(discriminator="type")]


class VectorStoreCreate(_WithMetadata):
    file_ids: list[str] = Field(default_factory=list, max_length=500)
    name: str | None = None
    expires_after: ExpiresAfter | None = None
    chunking_strategy: ChunkingStrategy | None = None


class VectorStoreUpdate(_WithMetadata):
    name: str | None = None
    expires_after: ExpiresAfter | None = None


class VectorStoreFileCreate(_Params):
    file_id: str
    chunking_strategy: ChunkingStrategy | None = None
    attributes: dict[str, str | float | bool] | None = None


class FileBatchCreate(_Params):
    file_ids: list[str] | None = Field(default=None, min_length=1, max_length=2000)
    files: list[VectorStoreFileCreate] | None = Field(default=None, min_length=1, max_length=2000)
    chunking_strategy: ChunkingStrategy | None = None
    attributes: dict[str, str | float | bool] | None = None

    @model_validator(mode="after")
    def _some_files(self) -> FileBatchCreate:
        if not self.file_ids and not self.files:
            raise ValueError("either file_ids or files is required")
        return self


class SearchRanking(_Params):
    ranker: Literal["none", "auto", "default-2024-11-15"] = "auto"
    score_threshold: float = Field(default=0.0, ge=0, le=1)


class VectorStoreSearch(_Params):
    query: str | Annotated[list[str], Field(min_length=1)]
    rewrite_query: bool = False
    max_num_results: int = Field(default=10, ge=1, le=50)
    filters: dict[str, Any] | None = None
    ranking_options: SearchRanking | None = None
