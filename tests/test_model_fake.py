"""The scripted model server must be indistinguishable from OpenAI to the official SDK."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from tests.fakes.model_server import (
    ModelFake,
    ToolCall,
    error_reply,
    hang_reply,
    length_reply,
    malformed_reply,
    run_model_fake,
    text_reply,
    tool_calls_reply,
)

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi there"}]


@pytest.fixture
async def fake() -> AsyncIterator[ModelFake]:
    async with run_model_fake() as server:
        yield server


@pytest.fixture
async def client(fake: ModelFake) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=fake.url, api_key="k", max_retries=0, timeout=5) as sdk:
        yield sdk


async def test_streaming_text_with_usage(fake: ModelFake, client: AsyncOpenAI) -> None:
    fake.script(text_reply("Hello, streaming world!", chunk_size=5, prompt_tokens=7))
    stream = await client.chat.completions.create(
        model="gpt-test",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello, streaming world!"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    assert all(c.object == "chat.completion.chunk" and c.model == "gpt-test" for c in chunks)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    finish = chunks[-2].choices[0]
    assert finish.finish_reason == "stop" and finish.delta.content is None
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (7, 5)
    assert chunks[-1].usage.total_tokens == 12
    assert fake.pending == 0


async def test_raw_sse_wire_format(fake: ModelFake) -> None:
    """Byte-level check of what the SDK hides: framing, null fields, no usage key."""
    fake.script(text_reply("abc", chunk_size=2))
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    headers = {"Authorization": "Bearer k"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{fake.url}/chat/completions", json=body, headers=headers) as response,
    ):
        assert response.headers["Content-Type"].startswith("text/event-stream")
        raw = (await response.read()).decode()

    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "refusal": None, "content": ""},
        {"content": "ab"},
        {"content": "c"},
        {},
    ]
    first = chunks[0]
    assert set(first) == {"id", "object", "created", "model", "system_fingerprint", "choices"}
    assert first["system_fingerprint"] is None
    assert first["choices"][0]["logprobs"] is None
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_streaming_parallel_tool_calls(fake: ModelFake, client: AsyncOpenAI) -> None:
    weather = ToolCall("get_weather", json.dumps({"city": "Paris", "unit": "celsius"}))
    lookup = ToolCall("lookup", '{"q": "x"}', id="call_fixed")
    fake.script(tool_calls_reply(weather, lookup, arguments_chunk_size=5))
    stream = await client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
    calls: dict[int, dict[str, str]] = {}
    finish_reasons = []
    first_delta = None
    async for chunk in stream:
        choice = chunk.choices[0]
        first_delta = first_delta or choice.delta
        finish_reasons.append(choice.finish_reason)
        for part in choice.delta.tool_calls or []:
            entry = calls.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
            if part.id:
                assert part.type == "function" and entry["id"] == ""
                entry["id"] = part.id
            assert part.function is not None
            entry["name"] += part.function.name or ""
            entry["arguments"] += part.function.arguments or ""

    assert first_delta is not None
    assert first_delta.role == "assistant" and first_delta.content is None
    assert finish_reasons[-1] == "tool_calls"
    assert calls == {
        0: {"id": weather.id, "name": "get_weather", "arguments": weather.arguments},
        1: {"id": "call_fixed", "name": "lookup", "arguments": '{"q": "x"}'},
    }
    assert weather.id is not None and weather.id.startswith("call_")


async def test_non_stream_full_message(fake: ModelFake, client: AsyncOpenAI) -> None:
    call = ToolCall("f", "{}")
    fake.script(text_reply("whole answer"), tool_calls_reply(call, text="thinking"))
    completion = await client.chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert completion.object == "chat.completion"
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == "whole answer"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens > 0

    completion = await client.chat.completions.create(model="gpt-test", messages=MESSAGES)
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    assert message.content == "thinking"
    assert message.tool_calls is not None
    assert [(c.id, c.type, c.model_dump()["function"]["name"]) for c in message.tool_calls] == [
        (call.id, "function", "f")
    ]


async def test_length_and_echo_default(fake: ModelFake, client: AsyncOpenAI) -> None:
    fake.script(length_reply("cut"))
    completion = await client.chat.completions.create(model="m", messages=MESSAGES)
    assert completion.choices[0].finish_reason == "length"
    # Empty queue: the default echoes the last user message (string or content parts).
    parts: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": [{"type": "text", "text": "parts"}]}
    ]
    completion = await client.chat.completions.create(model="m", messages=parts)
    assert completion.choices[0].message.content == "echo: parts"


async def test_errors_map_to_sdk_exceptions(fake: ModelFake, client: AsyncOpenAI) -> None:
    fake.script(error_reply(500, "boom"), error_reply(429, "slow down", retry_after=2))
    with pytest.raises(openai.InternalServerError) as server_error:
        await client.chat.completions.create(model="m", messages=MESSAGES)
    assert server_error.value.body == {
        "message": "boom",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    with pytest.raises(openai.RateLimitError) as rate_error:
        await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    assert rate_error.value.response.headers["retry-after"] == "2"
    assert rate_error.value.code == "rate_limit_exceeded"


async def test_auth_and_bad_json_rejected(fake: ModelFake) -> None:
    async with aiohttp.ClientSession() as session:
        url = f"{fake.url}/chat/completions"
        async with session.post(url, json={"model": "m", "messages": []}) as response:
            assert response.status == 401
            assert (await response.json())["error"]["type"] == "invalid_request_error"
        headers = {"Authorization": "Bearer anything", "Content-Type": "application/json"}
        async with session.post(url, data="{nope", headers=headers) as response:
            assert response.status == 400
            assert "message" in (await response.json())["error"]
    assert fake.requests == []


async def test_malformed_stream_raises(fake: ModelFake, client: AsyncOpenAI) -> None:
    fake.script(malformed_reply("partial"))
    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    received = []
    with pytest.raises(json.JSONDecodeError):
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "partial"


async def test_requests_recorded_and_next_request(fake: ModelFake, client: AsyncOpenAI) -> None:
    waiter = asyncio.create_task(fake.next_request(timeout=2))
    await client.chat.completions.create(model="model-a", messages=MESSAGES, temperature=0.5)
    await client.chat.completions.create(model="model-b", messages=MESSAGES)
    first = await waiter
    assert first["model"] == "model-a" and first["temperature"] == 0.5
    assert first["messages"] == MESSAGES
    assert (await fake.next_request())["model"] == "model-b"
    assert [r["model"] for r in fake.requests] == ["model-a", "model-b"]
    with pytest.raises(TimeoutError):
        await fake.next_request(timeout=0.05)

    models = await client.models.list()
    assert [m.id for m in models.data] == ["fake-model", "model-a", "model-b"]
    fake.reset()
    assert fake.requests == [] and fake.pending == 0


async def test_latency_settings(client: AsyncOpenAI, fake: ModelFake) -> None:
    fake.ttft, fake.token_interval = 0.05, 0.02
    fake.script(text_reply("abcdef", chunk_size=2))
    started = time.perf_counter()
    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    first_at = None
    async for _chunk in stream:
        first_at = first_at or time.perf_counter() - started
    total = time.perf_counter() - started
    assert first_at is not None and first_at >= 0.05
    # 5 events follow the role chunk; at least 4 gaps precede the finish chunk.
    assert total >= 0.05 + 4 * 0.02


async def test_hang_times_out_client_and_shuts_down_cleanly() -> None:
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        async with run_model_fake() as server:
            server.script(hang_reply(), hang_reply())
            sdk = AsyncOpenAI(base_url=server.url, api_key="k", max_retries=0, timeout=0.1)
            async with sdk:
                with pytest.raises(openai.APITimeoutError):
                    await sdk.chat.completions.create(model="m", messages=MESSAGES)
            # A second hanging request is still in flight when the server stops.
            in_flight = asyncio.create_task(
                session.post(
                    f"{server.url}/chat/completions",
                    json={"model": "m", "messages": MESSAGES},
                    headers={"Authorization": "Bearer k"},
                )
            )
            await server.next_request()
            await server.next_request()
        response = await in_flight
        assert response.status == 504
        response.release()
    assert time.perf_counter() - started < 1.0
