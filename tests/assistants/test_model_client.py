"""`ModelClient` builds the SDK's types with pydantic validation, and still reads the sloppy
streams some endpoints send the way the SDK always did."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai._base_client
import pytest
from aiohttp import web
from openai.types.chat import ChatCompletionChunk

from assistants import ModelClient
from tests.fakes.model_server import ModelFake, text_reply
from tests.local_http import serve


@pytest.fixture
def lenient_builds(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every object the SDK's lenient builder makes (what ModelClient avoids when it can)."""
    built: list[Any] = []
    construct_type = openai._base_client.construct_type

    def counting(*, type_: Any, value: object) -> Any:
        built.append(type_)
        return construct_type(type_=type_, value=value)

    monkeypatch.setattr(openai._base_client, "construct_type", counting)
    return built


async def _stream_text(client: openai.AsyncOpenAI) -> tuple[str, list[ChatCompletionChunk]]:
    stream = await client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


async def test_well_formed_chunks_are_validated_not_constructed(
    model: ModelFake, lenient_builds: list[Any]
) -> None:
    model.script(text_reply("The answer is 42."))
    async with ModelClient(base_url=model.url, api_key="model-key") as client:
        text, chunks = await _stream_text(client)
    assert text == "The answer is 42."
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert lenient_builds == []


async def _sloppy_stream(request: web.Request) -> web.StreamResponse:
    """A llama.cpp-style stream: chunks without `created`, `model` or `object`."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for piece in ("Hel", "lo"):
        chunk = {"id": "c1", "choices": [{"index": 0, "delta": {"content": piece}}]}
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    return response


@pytest.fixture
async def sloppy_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _sloppy_stream)
    async with serve(app) as url:
        yield f"{url}/v1"


async def test_chunks_pydantic_rejects_are_built_leniently(
    sloppy_url: str, lenient_builds: list[Any]
) -> None:
    async with ModelClient(base_url=sloppy_url, api_key="model-key", max_retries=0) as client:
        text, chunks = await _stream_text(client)
    assert text == "Hello"
    assert lenient_builds == [ChatCompletionChunk, ChatCompletionChunk]
    assert chunks[0].id == "c1"
