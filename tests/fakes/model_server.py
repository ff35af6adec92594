"""A scripted OpenAI Chat Completions server for tests and benchmarks.

The Assistants engine talks to its model provider through the official ``openai``
SDK, so the most honest fake is a real HTTP server that speaks the wire format the
SDK parses: Server-Sent Events with ``chat.completion.chunk`` objects shaped exactly
like OpenAI's (first delta carries the role, tool calls arrive as a header delta
followed by argument fragments, an optional trailing usage chunk, ``[DONE]``).
Going through real sockets also exercises the engine's timeouts, retries and
stream handling, which an in-process mock of ``AsyncOpenAI`` would skip.

Tests queue replies with :meth:`ModelFake.script`; each incoming request plays the
next one. When the queue is empty the default factory answers (echo by default),
so benchmarks can run unscripted.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

__all__ = [
    "ModelFake",
    "Reply",
    "ToolCall",
    "echo_reply",
    "error_reply",
    "hang_reply",
    "length_reply",
    "malformed_reply",
    "run_model_fake",
    "text_reply",
    "tool_calls_reply",
]

DEFAULT_MODEL = "fake-model"

Json = dict[str, Any]


def _random_id(prefix: str, length: int = 24) -> str:
    """OpenAI-looking identifiers, so code that logs or matches on prefixes behaves."""
    return prefix + secrets.token_hex(length)[:length]


@dataclass
class ToolCall:
    """One function call the fake model makes; ``arguments`` is JSON text, as on the wire."""

    name: str
    arguments: str
    id: str | None = None

    def __post_init__(self) -> None:
        # Assigned eagerly so a test can assert on the id the engine must echo back.
        if self.id is None:
            self.id = _random_id("call_")


ReplyKind = Literal["completion", "error", "malformed", "hang", "echo"]


@dataclass(frozen=True)
class Reply:
    """What the server does for one request. Build it with the ``*_reply`` helpers."""

    kind: ReplyKind
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str = "stop"
    chunk_size: int = 4
    arguments_chunk_size: int = 8
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    status: int = 200
    message: str = ""
    retry_after: float | None = None
    seconds: float = 0.0


def text_reply(
    text: str,
    *,
    chunk_size: int = 4,
    finish_reason: str = "stop",
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
) -> Reply:
    """Plain assistant text, streamed ``chunk_size`` characters per delta.

    Usage defaults: prompt tokens ≈ len(json(messages)) / 4, completion tokens = chunks.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    return Reply(
        kind="completion",
        text=text,
        chunk_size=chunk_size,
        finish_reason=finish_reason,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )


def tool_calls_reply(*calls: ToolCall, text: str = "", arguments_chunk_size: int = 8) -> Reply:
    """Parallel tool calls (finish_reason ``tool_calls``), optionally after some text."""
    if not calls:
        raise ValueError("tool_calls_reply needs at least one ToolCall")
    if arguments_chunk_size < 1:
        raise ValueError("arguments_chunk_size must be >= 1")
    return Reply(
        kind="completion",
        text=text,
        tool_calls=tuple(calls),
        finish_reason="tool_calls",
        arguments_chunk_size=arguments_chunk_size,
    )


def length_reply(text: str) -> Reply:
    """Text cut off by ``max_tokens``: the engine must treat the run as incomplete."""
    return text_reply(text, finish_reason="length")


def error_reply(
    status: int,
    message: str = "The fake model server returned a scripted error.",
    *,
    retry_after: float | None = None,
) -> Reply:
    """An HTTP error with OpenAI's error body; the SDK maps the status to its exception."""
    if status < 400:
        raise ValueError("error_reply needs a 4xx/5xx status")
    return Reply(kind="error", status=status, message=message, retry_after=retry_after)


def malformed_reply(after_text: str = "") -> Reply:
    """Valid chunks for ``after_text``, then a broken ``data:`` line and end of stream."""
    return Reply(kind="malformed", text=after_text)


def hang_reply(seconds: float = 3600) -> Reply:
    """Accept the request and stay silent for ``seconds`` (or until shutdown)."""
    return Reply(kind="hang", seconds=seconds)


def echo_reply() -> Reply:
    """``"echo: " + <last user message>``; makes unscripted runs deterministic."""
    return Reply(kind="echo")


def _default_factory(_request: Json) -> Reply:
    return echo_reply()


def _last_user_text(request: Json) -> str:
    """Text of the last user message; content may be a string or a list of parts."""
    for message in reversed(request.get("messages") or []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "".join(
                part.get("text", "")
                for part in content
                if isinstance(part, dict) and part.get("type") == "text"
            )
        return ""
    return ""


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _error_body(status: int, message: str, *, param: str | None = None) -> Json:
    """OpenAI's error envelope, with the ``type``/``code`` OpenAI uses for that status."""
    if status == 429:
        kind, code = "requests", "rate_limit_exceeded"
    elif status >= 500:
        kind, code = "server_error", None
    elif status == 401:
        kind, code = "invalid_request_error", "invalid_api_key"
    else:
        kind, code = "invalid_request_error", None
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _sse(payload: Json | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


class _Completion:
    """Renders one resolved completion reply as stream chunks or a full object."""

    def __init__(self, reply: Reply, request: Json) -> None:
        self.reply = reply
        self.id = _random_id("chatcmpl-", 29)
        self.created = int(time.time())
        model = request.get("model")
        self.model = model if isinstance(model, str) else DEFAULT_MODEL
        stream_options = request.get("stream_options")
        self.include_usage = isinstance(stream_options, dict) and bool(
            stream_options.get("include_usage")
        )
        messages = request.get("messages") or []
        self.estimated_prompt_tokens = max(1, len(json.dumps(messages)) // 4)

    def _usage(self) -> Json:
        """Scripted counts win; otherwise a rough estimate good enough for accounting tests."""
        prompt = self.reply.prompt_tokens
        if prompt is None:
            prompt = self.estimated_prompt_tokens
        completion = self.reply.completion_tokens
        if completion is None:
            completion = self.content_delta_count()
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _chunk(self, delta: Json, finish_reason: str | None = None) -> Json:
        chunk: Json = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def _deltas(self) -> Iterator[Json]:
        """Content-bearing deltas in OpenAI's order; the role rides on the first one."""
        reply = self.reply
        first: Json = {"role": "assistant", "refusal": None}
        if reply.text or not reply.tool_calls:
            yield {**first, "content": ""}
            first = {}
            for piece in _pieces(reply.text, reply.chunk_size):
                yield {"content": piece}
        for index, call in enumerate(reply.tool_calls):
            header = {
                "index": index,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            # A tool-only reply announces the role with ``content: null`` on the first header.
            yield (
                {**first, "content": None, "tool_calls": [header]}
                if first
                else {"tool_calls": [header]}
            )
            first = {}
            for piece in _pieces(call.arguments, reply.arguments_chunk_size):
                yield {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}

    def events(self) -> list[bytes]:
        """Every SSE event of the stream, ``[DONE]`` included (or the broken line)."""
        events = [_sse(self._chunk(delta)) for delta in self._deltas()]
        if self.reply.kind == "malformed":
            return [*events, b"data: {not json\n\n"]
        events.append(_sse(self._chunk({}, self.reply.finish_reason)))
        if self.include_usage:
            usage_chunk = self._chunk({})
            usage_chunk["choices"] = []
            usage_chunk["usage"] = self._usage()
            events.append(_sse(usage_chunk))
        events.append(_sse("[DONE]"))
        return events

    def content_delta_count(self) -> int:
        """Deltas that carry output (text pieces, tool headers, argument pieces)."""
        reply = self.reply
        count = len(_pieces(reply.text, reply.chunk_size))
        for call in reply.tool_calls:
            count += 1 + len(_pieces(call.arguments, reply.arguments_chunk_size))
        return count

    def full(self) -> Json:
        """The non-streaming ``chat.completion`` object."""
        reply = self.reply
        message: Json = {
            "role": "assistant",
            "content": reply.text if reply.text or not reply.tool_calls else None,
            "refusal": None,
            "annotations": [],
        }
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in reply.tool_calls
            ]
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": self._usage(),
            "system_fingerprint": None,
        }


class ModelFake:
    """The fake provider: scripted replies, recorded requests, configurable latency."""

    url: str
    requests: list[Json]
    ttft: float
    token_interval: float

    def __init__(self, *, ttft: float = 0.0, token_interval: float = 0.0) -> None:
        self.url = ""  # set by start()
        self.requests = []
        self.ttft = ttft
        self.token_interval = token_interval
        self._queue: deque[Reply] = deque()
        self._default: Callable[[Json], Reply] = _default_factory
        self._consumed = 0
        self._arrived = asyncio.Condition()
        self._closing = asyncio.Event()
        self._models: dict[str, None] = {}  # insertion-ordered set of model names seen
        self._runner: web.AppRunner | None = None

    # -- scripting -------------------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Queue replies; each request to /chat/completions plays the next one (FIFO)."""
        self._queue.extend(replies)

    def set_default(self, reply_factory: Callable[[Json], Reply]) -> None:
        """What to answer when the queue is empty; gets the request body."""
        self._default = reply_factory

    @property
    def pending(self) -> int:
        """Scripted replies not yet played; tests assert 0 to catch missing model calls."""
        return len(self._queue)

    async def next_request(self, timeout: float = 5.0) -> Json:  # noqa: ASYNC109 (part of the API)
        """The oldest request body not yet returned by this method, waiting for it.

        Raises ``TimeoutError`` after ``timeout`` seconds so a missing model call fails fast.
        """
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) > self._consumed)
            self._consumed += 1
            return self.requests[self._consumed - 1]

    def reset(self) -> None:
        """Forget requests, queued replies and the default; latency settings stay."""
        self.requests.clear()
        self._queue.clear()
        self._consumed = 0
        self._default = _default_factory

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Bind (port 0 = any free port) and fill in ``url``."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/v1/models", self._list_models)
        # Handlers stop promptly via ``_closing``, so a short grace period suffices.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_port = self._runner.addresses[0][1]
        self.url = f"http://{host}:{bound_port}/v1"

    async def close(self) -> None:
        """Wake hanging/sleeping handlers first so shutdown never waits on them."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- HTTP handlers -------------------------------------------------------------------

    async def _pause(self, seconds: float) -> bool:
        """Sleep unless the server is closing; returns False if it is."""
        if seconds <= 0:
            return not self._closing.is_set()
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            return True
        return False

    @staticmethod
    def _error(status: int, message: str, *, param: str | None = None) -> web.Response:
        return web.json_response(_error_body(status, message, param=param), status=status)

    @staticmethod
    def _authorized(request: web.Request) -> bool:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and bool(key.strip())

    async def _list_models(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, "You didn't provide an API key.")
        names = dict.fromkeys([DEFAULT_MODEL, *self._models])
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "fake"} for name in names]
        return web.json_response({"object": "list", "data": data})

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._error(401, "You didn't provide an API key.")
        try:
            body = await request.json()
        except ValueError:
            return self._error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body, dict):
            return self._error(400, "The request body must be a JSON object.")
        async with self._arrived:
            self.requests.append(body)
            self._arrived.notify_all()
        if not isinstance(body.get("model"), str):
            return self._error(400, "Missing required parameter: 'model'.", param="model")
        if not isinstance(body.get("messages"), list):
            return self._error(400, "Missing required parameter: 'messages'.", param="messages")
        self._models[body["model"]] = None

        reply = self._queue.popleft() if self._queue else self._default(body)
        if reply.kind == "echo":
            reply = text_reply("echo: " + _last_user_text(body))
        if reply.kind == "error":
            return self._play_error(reply)
        if reply.kind == "hang":
            await self._pause(reply.seconds)
            return self._error(504, "The fake model hung (hang_reply).")

        completion = _Completion(reply, body)
        if not body.get("stream"):
            return await self._play_full(completion)
        return await self._play_stream(request, completion)

    def _play_error(self, reply: Reply) -> web.Response:
        response = self._error(reply.status, reply.message)
        if reply.retry_after is not None:
            response.headers["Retry-After"] = f"{reply.retry_after:g}"
        return response

    async def _play_full(self, completion: _Completion) -> web.Response:
        # Simulate the whole generation time, so latency settings matter here too.
        delay = self.ttft + self.token_interval * completion.content_delta_count()
        if not await self._pause(delay):
            return self._error(503, "The fake model server is shutting down.")
        if completion.reply.kind == "malformed":
            return web.Response(status=200, text="{not json", content_type="application/json")
        return web.json_response(completion.full())

    async def _play_stream(
        self, request: web.Request, completion: _Completion
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            }
        )
        if not await self._pause(self.ttft):
            return self._error(503, "The fake model server is shutting down.")
        await response.prepare(request)
        try:
            for position, event in enumerate(completion.events()):
                if position and not await self._pause(self.token_interval):
                    break
                await response.write(event)
            await response.write_eof()
        except ConnectionResetError:
            pass  # The client gave up (timeout, cancelled stream): nothing left to do.
        return response


@asynccontextmanager
async def run_model_fake(
    *, ttft: float = 0.0, token_interval: float = 0.0
) -> AsyncIterator[ModelFake]:
    """Serve a :class:`ModelFake` on 127.0.0.1 (free port) for the ``async with`` body."""
    fake = ModelFake(ttft=ttft, token_interval=token_interval)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()
