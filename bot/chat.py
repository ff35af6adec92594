"""`slack-assistants chat`: a terminal conversation with an assistant from `assistants.yml`.

The assistant and thread are created on first use and remembered in `DATA_DIR/chat.json`, so
the next session continues the conversation. Answers stream as the model writes them; function
calls are answered by the same handlers the Slack bot uses.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from assistants import (
    Engine,
    MessageCreate,
    NotFound,
    RunCreate,
    StreamEvent,
    SubmitToolOutputs,
    ThreadCreate,
)
from bot.assistants_file import load_assistants_file, sync_assistants
from bot.functions import FunctionContext, FunctionRegistry, builtin_functions
from bot.runtime import open_runtime
from bot.settings import Settings

__all__ = ["chat"]

ReadLine = Callable[[str], Awaitable[str | None]]

_HELP = "Commands: /new starts a fresh conversation, /quit (or Ctrl-D) leaves."


async def chat(
    settings: Settings,
    *,
    assistant: str | None = None,
    new: bool = False,
    read_line: ReadLine | None = None,
    out: TextIO = sys.stdout,
) -> int:
    functions = builtin_functions()
    file = load_assistants_file(settings.assistants_file, functions.schemas())
    name = assistant or file.default_for("dm")
    if name not in file.names():
        out.write(f"No assistant named {name!r} in {file.path}. Known: {', '.join(file.names())}\n")
        return 2
    read = read_line or _read_stdin
    async with open_runtime(settings) as runtime:
        ids = await sync_assistants(runtime.engine, file)
        state = _State(settings.data_dir / "chat.json")
        conversation = _Conversation(runtime.engine, functions, ids[name], out)
        thread_id = None if new else state.threads.get(name)
        thread_id = await conversation.open(thread_id)
        state.remember(name, thread_id)
        out.write(f"Chatting with {name}. {_HELP}\n")
        while True:
            line = await read("you> ")
            if line is None or line.strip() in ("/quit", "/exit"):
                out.write("\n")
                return 0
            text = line.strip()
            if not text:
                continue
            if text == "/new":
                thread_id = await conversation.open(None)
                state.remember(name, thread_id)
                out.write("Started a new conversation.\n")
                continue
            if text == "/help":
                out.write(_HELP + "\n")
                continue
            await conversation.ask(thread_id, text)


class _Conversation:
    def __init__(
        self, engine: Engine, functions: FunctionRegistry, assistant_id: str, out: TextIO
    ) -> None:
        self._engine, self._functions = engine, functions
        self._assistant_id, self._out = assistant_id, out

    async def open(self, thread_id: str | None) -> str:
        """The remembered thread if it still exists, else a new one."""
        if thread_id is not None:
            try:
                return (await self._engine.threads.retrieve(thread_id)).id
            except NotFound:
                pass
        return (await self._engine.threads.create(ThreadCreate())).id

    async def ask(self, thread_id: str, text: str) -> None:
        params = RunCreate(
            assistant_id=self._assistant_id,
            additional_messages=[MessageCreate(role="user", content=text)],
        )
        events: AsyncIterator[StreamEvent] | None
        events = await self._engine.runs.create_stream(thread_id, params)
        self._out.write("assistant> ")
        while events is not None:
            events = await self._show(thread_id, events)
        self._out.write("\n")
        self._out.flush()

    async def _show(
        self, thread_id: str, events: AsyncIterator[StreamEvent]
    ) -> AsyncIterator[StreamEvent] | None:
        """Prints one stream; returns the next one when tool outputs resume the run."""
        async for event in events:
            data: Any = event.data
            if event.event == "thread.message.delta":
                for part in data.delta.content or []:
                    if part.type == "text" and part.text and part.text.value:
                        self._out.write(part.text.value)
                        self._out.flush()
            elif event.event == "thread.run.requires_action":
                outputs = []
                for call in data.required_action.submit_tool_outputs.tool_calls:
                    output = await self._functions.call(
                        call.function.name, call.function.arguments, FunctionContext()
                    )
                    outputs.append({"tool_call_id": call.id, "output": output})
                return await self._engine.runs.submit_tool_outputs_stream(
                    thread_id, data.id, SubmitToolOutputs.model_validate({"tool_outputs": outputs})
                )
            elif event.event == "thread.run.failed":
                error = data.last_error
                self._out.write(f"\n[error] {error.message if error else 'the run failed'}")
            elif event.event == "thread.run.incomplete":
                reason = data.incomplete_details.reason if data.incomplete_details else "unknown"
                self._out.write(f"\n[incomplete: {reason}]")
            elif event.event in ("thread.run.cancelled", "thread.run.expired"):
                self._out.write(f"\n[{event.event.rsplit('.', 1)[1]}]")
        return None


class _State:
    """assistant name -> thread id, kept between sessions."""

    def __init__(self, path: Path) -> None:
        self._path = path
        try:
            self.threads: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.threads = {}

    def remember(self, name: str, thread_id: str) -> None:
        self.threads[name] = thread_id
        self._path.write_text(json.dumps(self.threads, indent=2), encoding="utf-8")


async def _read_stdin(prompt: str) -> str | None:
    try:
        return await asyncio.to_thread(input, prompt)
    except EOFError:
        return None
