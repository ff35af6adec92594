"""Embedders: the endpoint's /embeddings (against a local server), the choice, the local model."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from aiohttp import web

from assistants.retrieval import (
    EmbeddingFailed,
    LocalEmbedder,
    ProviderEmbedder,
    default_embedder,
    local_embeddings_available,
)


class EmbeddingsServer:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail = False

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        if self.fail:
            return web.json_response({"error": {"message": "boom", "type": "server_error"}}, 500)
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(text)), 1.0, 0.0]}
            for i, text in enumerate(body["input"])
        ]
        data.reverse()  # servers may answer out of order; `index` says where each belongs
        usage = {"prompt_tokens": 1, "total_tokens": 1}
        return web.json_response(
            {"object": "list", "data": data, "model": body["model"], "usage": usage}
        )


@pytest.fixture
async def server() -> AsyncIterator[tuple[EmbeddingsServer, openai.AsyncOpenAI]]:
    fake = EmbeddingsServer()
    app = web.Application()
    app.router.add_post("/v1/embeddings", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
    yield fake, client
    await client.close()
    await runner.cleanup()


async def test_provider_batches_and_orders(
    server: tuple[EmbeddingsServer, openai.AsyncOpenAI],
) -> None:
    fake, client = server
    embedder = ProviderEmbedder(client, "text-embedding-3-small", batch_size=2)
    assert embedder.dimensions is None
    vectors = await embedder.embed(["a", "bb", "ccc", "dddd", "eeeee"])
    assert [v[0] for v in vectors] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert [len(r["input"]) for r in fake.requests] == [2, 2, 1]
    assert fake.requests[0]["model"] == "text-embedding-3-small"
    assert embedder.dimensions == 3 and embedder.name == "provider:text-embedding-3-small"
    assert await embedder.embed([]) == []


async def test_provider_passes_dimensions(
    server: tuple[EmbeddingsServer, openai.AsyncOpenAI],
) -> None:
    fake, client = server
    embedder = ProviderEmbedder(client, "text-embedding-3-large", dimensions=256)
    await embedder.embed(["x"])
    assert fake.requests[0]["dimensions"] == 256
    assert embedder.name == "provider:text-embedding-3-large:256"


async def test_provider_errors_are_typed(
    server: tuple[EmbeddingsServer, openai.AsyncOpenAI],
) -> None:
    fake, client = server
    fake.fail = True
    with pytest.raises(EmbeddingFailed, match="text-embedding-3-small"):
        await ProviderEmbedder(client, "text-embedding-3-small").embed(["x"])


def test_default_embedder_choice(caplog: pytest.LogCaptureFixture) -> None:
    client = openai.AsyncOpenAI(base_url="http://127.0.0.1:9/v1", api_key="k")
    caplog.set_level(logging.INFO, "assistants.retrieval")
    chosen = default_embedder(client=client, model="text-embedding-3-small")
    assert isinstance(chosen, ProviderEmbedder)
    assert default_embedder(client=client, model=None, local=False) is None
    assert "BM25 keywords only" in caplog.text
    local = default_embedder(client=client, model=None)
    assert isinstance(local, LocalEmbedder) == local_embeddings_available()


async def test_local_model_loads_offline_without_blocking_the_loop(
    local_embedder: LocalEmbedder,
) -> None:
    gaps: list[float] = []

    async def heartbeat() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    texts = ["How many vacation days do I get?", "Annual leave is 30 days.", "KST-4013"] * 20
    beat = asyncio.create_task(heartbeat())
    try:
        started = time.perf_counter()
        await local_embedder.warm_up()
        loading = time.perf_counter() - started
        # dlopen of torch's libraries holds the GIL briefly; the rest of the load does not.
        assert max(gaps, default=0) < max(1.5, loading / 3)
        gaps.clear()
        vectors = await local_embedder.embed(texts)
    finally:
        beat.cancel()
    assert max(gaps) < 0.25  # encoding runs in worker threads
    assert len(vectors) == 60 and all(len(v) == 384 for v in vectors)
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0, rel_tol=1e-4) for v in vectors)
    related = sum(a * b for a, b in zip(vectors[0], vectors[1], strict=True))
    unrelated = sum(a * b for a, b in zip(vectors[0], vectors[2], strict=True))
    assert related > unrelated
