"""Retrieval for file_search: extract text, chunk it, embed it, index it, search it.

    pages = extract_text(data, "handbook.pdf")                  # in a thread: CPU-bound
    chunks = chunk_pages(pages, max_tokens=800, overlap=400)   # in a thread too
    index = ChunkIndex(db, default_embedder(client=client, model=embedding_model))
    await index.add("vs_1", "file-1", "handbook.pdf", chunks)
    hits = await index.search(["vs_1"], "parental leave in Germany", max_results=5)

The tables live in `storage.retrieval`; call `create_retrieval_schema(db)` at start.
"""

from assistants.retrieval.chunking import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_OVERLAP,
    Chunk,
    chunk_pages,
    count_tokens,
    validate_static_strategy,
)
from assistants.retrieval.embeddings import (
    Embedder,
    EmbeddingFailed,
    LocalEmbedder,
    ProviderEmbedder,
    default_embedder,
    local_embeddings_available,
)
from assistants.retrieval.extract import (
    SUPPORTED_EXTENSIONS,
    InvalidFile,
    Page,
    UnsupportedFile,
    extract_text,
)
from assistants.retrieval.index import ChunkIndex, Hit, Mode

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_OVERLAP",
    "SUPPORTED_EXTENSIONS",
    "Chunk",
    "ChunkIndex",
    "Embedder",
    "EmbeddingFailed",
    "Hit",
    "InvalidFile",
    "LocalEmbedder",
    "Mode",
    "Page",
    "ProviderEmbedder",
    "UnsupportedFile",
    "chunk_pages",
    "count_tokens",
    "default_embedder",
    "extract_text",
    "local_embeddings_available",
    "validate_static_strategy",
]
