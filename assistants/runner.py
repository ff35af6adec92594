"""The model loop of a run: prompt -> streamed model turn -> message or tool calls -> repeat.

One background task per run. Text is published as message deltas while it streams; function
calls park the run in `requires_action` (the task ends; `resume` starts a new one when outputs
arrive). Provider errors are retried by the `openai` client (429/5xx with backoff); what still
fails ends the run as `failed` with a `last_error` a user can act on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import openai
from openai.types.beta.threads import MessageDeltaEvent
from openai.types.beta.threads.runs import RunStepDeltaEvent
from openai.types.chat import ChatCompletionChunk
from sqlalchemy import Connection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from assistants.builtin_calls import BuiltinCalls
from assistants.clock import Clock
from assistants.context import build_prompt
from assistants.events import EventHub
from assistants.ids import new_id
from assistants.lifecycle import (
    TERMINAL_STATUSES,
    RunChanged,
    RunLifecycle,
    end_message,
    summed_usage,
)
from assistants.tools import BuiltinTool
from assistants.wire import message_wire, step_wire
from storage import Database, MessageRow, RunRow, RunStepRow

__all__ = ["Runner", "RunnerConfig"]

log = logging.getLogger("assistants.runner")


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    #: Prompt budget (estimated tokens) for `auto` truncation when the run sets no max.
    context_tokens: int = 100_000
    #: Model turns that end in built-in tool calls before the run gives up (a loop guard).
    max_tool_turns: int = 20
    #: Runs this process executes at once; more wait queued for a process with room.
    max_active_runs: int = 1000


@dataclass
class _Turn:
    """What one streamed model response produced."""

    text: str = ""
    message: MessageRow | None = None
    step: RunStepRow | None = None
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    call_step: RunStepRow | None = None
    finish_reason: str | None = None
    usage: dict[str, int] | None = None

    def step_calls(self) -> list[dict[str, Any]]:
        """The tool calls as stored on the step (built-in ones in their own shape)."""
        assert self.call_step is not None
        calls: list[dict[str, Any]] = self.call_step.step_details["tool_calls"]
        return calls


#: How `stop` marks a run another worker took over: its task ends without writing.
_TAKEN = "taken"


class _BadResponse(Exception):
    """The provider's stream could not be parsed: its fault, reported as `server_error`."""


class _Stop(Exception):
    """Ends the loop with a terminal status decided inside a turn."""

    def __init__(self, status: str, *, reason: str | None = None) -> None:
        self.status, self.reason = status, reason


class Runner:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        events: EventHub,
        lifecycle: RunLifecycle,
        model: openai.AsyncOpenAI,
        config: RunnerConfig = RunnerConfig(),
        tools: Mapping[str, BuiltinTool] | None = None,
    ) -> None:
        self._db, self._clock, self._events = db, clock, events
        self._lifecycle, self._model, self._config = lifecycle, model, config
        self._builtins = BuiltinCalls(db=db, events=events, tools=tools or {})
        self._tasks: dict[str, asyncio.Task[None]] = {}
        #: The run ids of `_tasks`, replaced whole on each change: the heartbeat thread reads it.
        self._held: tuple[str, ...] = ()
        self._stop_as: dict[str, str] = {}
        self._draining = False
        #: Runs of this process that have made no tool call yet: their messages need no
        #: look-up of earlier steps (no citations, no images) when they close.
        self._plain: set[str] = set()

    def has_room(self) -> bool:
        """Whether this process takes another run now (not when full, nor when shutting down)."""
        return not self._draining and len(self._tasks) < self._config.max_active_runs

    @property
    def running(self) -> list[str]:
        return list(self._tasks)

    def start(self, run_id: str) -> None:
        """Runs (or resumes) the run in the background; the caller returns at once."""
        task = asyncio.create_task(self._execute(run_id), name=f"run {run_id}")
        self._tasks[run_id] = task
        self._held = tuple(self._tasks)
        task.add_done_callback(lambda done: self._forget(run_id, done))

    def _forget(self, run_id: str, task: asyncio.Task[None]) -> None:
        """Drops a finished task, but only if it is still the run's current one.

        A run parked in requires_action ends its task and `start` begins a new one when the
        outputs arrive; if that happened before the old task's done-callback ran, popping by
        run id alone would forget the *new* task, and `stop` (cancel, expiry) could no longer
        reach it.
        """
        if self._tasks.get(run_id) is task:
            del self._tasks[run_id]
            self._held = tuple(self._tasks)

    def is_running(self, run_id: str) -> bool:
        return run_id in self._tasks

    async def stop(self, run_id: str, *, status: str) -> bool:
        """Stops a working run, ending it as `status` (cancelled / expired / failed)."""
        task = self._tasks.get(run_id)
        if task is None or task.done():
            return False  # nothing to stop (and no `_stop_as` entry left behind)
        self._stop_as[run_id] = status
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        # A task cancelled before it began never read its entry: do not keep it forever.
        self._stop_as.pop(run_id, None)
        return True

    def renew_leases(self, connection: Connection, until: float) -> None:
        """The heartbeat's renewal (its own thread): the leases of the runs working here."""
        if self._held:
            connection.execute(self._lifecycle.lease.renewal(RunRow.id, self._held, until))

    async def reconcile(self) -> None:
        """Stops the runs working here that another process changed meanwhile: cancelled
        (this worker ends them), ended, or taken over after this process failed to renew in
        time (then it must not write anything more)."""
        run_ids = list(self._tasks)
        if not run_ids:
            return
        lease = self._lifecycle.lease
        async with self._db.session() as session:
            statement = select(RunRow.id, RunRow.status, RunRow.worker_id).where(
                col(RunRow.id).in_(run_ids)
            )
            rows = (await session.exec(statement)).all()
        for run_id, status, worker_id in rows:
            if status == "cancelling":
                await self.stop(run_id, status="cancelled")
            elif status in TERMINAL_STATUSES:
                await self.stop(run_id, status=status)
            elif worker_id != lease.worker_id and status == "in_progress":
                await self.stop(run_id, status=_TAKEN)

    async def drain(self, grace: float) -> None:
        """Takes no new runs, gives the working ones `grace` seconds, then stops the rest
        (they end `failed` with a message saying the server was shutting down)."""
        self._draining = True
        tasks = list(self._tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        for run_id in list(self._tasks):
            await self.stop(run_id, status="failed")

    async def close(self) -> None:
        await self.drain(0)

    async def _execute(self, run_id: str) -> None:
        try:
            await self._work(run_id)
        except Exception as exc:  # the run's own end could not be written (database away)
            log.exception("run task ended without finishing its run", extra={"run_id": run_id})
            self._events.abandon(run_id, f"The run stopped: {type(exc).__name__}.")
        finally:
            self._plain.discard(run_id)

    async def _work(self, run_id: str) -> None:
        try:
            try:
                run = await self._lifecycle.set_status(run_id, "in_progress", execute=True)
            except RunChanged:
                return  # cancelled, expired or taken by another worker: nothing to run here
            if run.usage is None:  # its first turn: no steps before this task
                self._plain.add(run_id)
            for _ in range(self._config.max_tool_turns):
                turn = await self._turn(run)
                if turn.call_step is None:
                    await asyncio.shield(self._complete(run_id, turn))
                    return
                await self._builtins.run_all(run, turn.call_step)
                functions = [c for c in turn.step_calls() if c["type"] == "function"]
                if functions:
                    await self._lifecycle.require_action(run_id, _required_calls(functions))
                    return
                await self._complete_step(turn.call_step)
                run = await self._reload(run_id)
            await self._fail(
                run_id,
                "server_error",
                f"The model called tools {self._config.max_tool_turns} times without answering.",
            )
        except _Stop as stop:
            await self._lifecycle.finish(run_id, stop.status, incomplete_reason=stop.reason)
        except asyncio.CancelledError:
            status = self._stop_as.pop(run_id, "failed")
            if status == _TAKEN:
                raise  # another worker executes it now: leave every write to that one
            error = None
            if status == "failed":
                error = _error("server_error", "The server stopped while working on this run.")
            await asyncio.shield(self._lifecycle.finish(run_id, status, last_error=error))
            raise
        except _BadResponse as exc:
            await self._fail(run_id, "server_error", str(exc))
        except openai.APIStatusError as exc:
            code = "rate_limit_exceeded" if exc.status_code == 429 else "server_error"
            if 400 <= exc.status_code < 500 and exc.status_code != 429:
                code = "invalid_prompt"
            message = f"The model endpoint answered {exc.status_code}: {_provider_message(exc)}"
            await self._fail(run_id, code, message)
        except (openai.APIConnectionError, openai.APIError) as exc:
            await self._fail(run_id, "server_error", f"The model endpoint failed: {exc}")
        except Exception:
            log.exception("run failed unexpectedly", extra={"run_id": run_id})
            await self._fail(run_id, "server_error", "Sorry, something went wrong.")

    async def _complete_step(self, step: RunStepRow) -> None:
        step.status, step.completed_at = "completed", self._clock.now()
        async with self._db.session() as session:
            session.add(step)
        self._events.publish(step.run_id, "thread.run.step.completed", step_wire(step))

    async def _reload(self, run_id: str) -> RunRow:
        async with self._db.session() as session:
            return (await session.exec(select(RunRow).where(col(RunRow.id) == run_id))).one()

    async def _fail(self, run_id: str, code: str, message: str) -> None:
        log.warning("run failed: %s", message, extra={"run_id": run_id})
        await self._lifecycle.finish(run_id, "failed", last_error=_error(code, message))

    async def _turn(self, run: RunRow) -> _Turn:
        usage = run.usage or {}
        budget = self._config.context_tokens
        if run.max_prompt_tokens is not None:
            budget = run.max_prompt_tokens - usage.get("prompt_tokens", 0)
        async with self._db.session() as session:
            prompt = await build_prompt(session, run, budget=budget)
        if run.max_prompt_tokens is not None and prompt.tokens > budget:
            raise _Stop("incomplete", reason="max_prompt_tokens")
        request = self._request(run, prompt.messages, usage)
        turn = _Turn()
        try:
            stream = await self._model.chat.completions.create(**request)
            async with aclosing(_chunks(stream)) as chunks:
                async for chunk in chunks:
                    await self._on_chunk(run, turn, chunk)
        except asyncio.CancelledError:
            await asyncio.shield(self._save_partial(turn))
            raise
        except Exception:
            await self._save_partial(turn)
            raise
        await self._end_turn(run, turn)
        if turn.finish_reason == "length":
            raise _Stop("incomplete", reason="max_completion_tokens")
        return turn

    def _request(
        self, run: RunRow, messages: list[dict[str, Any]], usage: dict[str, int]
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": run.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        tools = [_chat_tool(tool) for tool in run.tools if tool["type"] == "function"]
        tools += self._builtins.schemas(run)
        if tools and run.tool_choice != "none":
            request["tools"] = tools
            request["parallel_tool_calls"] = run.parallel_tool_calls
            if run.tool_choice is not None:
                request["tool_choice"] = _chat_tool_choice(run.tool_choice)
        if run.temperature is not None:
            request["temperature"] = run.temperature
        if run.top_p is not None:
            request["top_p"] = run.top_p
        if run.max_completion_tokens is not None:
            spent = usage.get("completion_tokens", 0)
            request["max_completion_tokens"] = max(run.max_completion_tokens - spent, 1)
        if run.response_format not in (None, "auto"):
            request["response_format"] = _chat_response_format(run.response_format)
        return request

    async def _on_chunk(self, run: RunRow, turn: _Turn, chunk: ChatCompletionChunk) -> None:
        if chunk.usage is not None:
            turn.usage = {
                "prompt_tokens": chunk.usage.prompt_tokens,
                "completion_tokens": chunk.usage.completion_tokens,
                "total_tokens": chunk.usage.total_tokens,
            }
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content:
                if turn.message is None:
                    await self._open_message(run, turn)
                first = not turn.text
                turn.text += delta.content
                self._publish_text(run.id, turn, delta.content, first)
            for call in delta.tool_calls or []:
                if turn.message is not None and turn.call_step is None:
                    await self._close_message(turn)
                if turn.call_step is None:
                    await self._open_call_step(run, turn)
                self._on_call_delta(run, turn, call)
            if choice.finish_reason:
                turn.finish_reason = choice.finish_reason

    async def _open_message(self, run: RunRow, turn: _Turn) -> None:
        now = self._clock.now()
        message = MessageRow(
            id=new_id("message"),
            thread_id=run.thread_id,
            created_at=now,
            role="assistant",
            status="in_progress",
            content=[],
            attachments=[],
            assistant_id=run.assistant_id,
            run_id=run.id,
        )
        step = _new_step(
            run, now, "message_creation", {"message_id": message.id}, key="message_creation"
        )
        async with self._db.session() as session:
            session.add(step)
            session.add(message)
        turn.message, turn.step = message, step
        wire_step = step_wire(step)
        self._events.publish(run.id, "thread.run.step.created", wire_step)
        self._events.publish(run.id, "thread.run.step.in_progress", wire_step)
        wire_message = message_wire(message)
        self._events.publish(run.id, "thread.message.created", wire_message)
        self._events.publish(run.id, "thread.message.in_progress", wire_message)

    def _publish_text(self, run_id: str, turn: _Turn, text: str, first: bool) -> None:
        assert turn.message is not None
        part: dict[str, Any] = {"index": 0, "type": "text", "text": {"value": text}}
        if first:
            part["text"]["annotations"] = []  # hosted sends annotations on the first delta only
        delta = MessageDeltaEvent.model_validate(
            {"id": turn.message.id, "object": "thread.message.delta", "delta": {"content": [part]}}
        )
        self._events.publish(run_id, "thread.message.delta", delta)

    async def _open_call_step(self, run: RunRow, turn: _Turn) -> None:
        step = _new_step(run, self._clock.now(), "tool_calls", [], key="tool_calls")
        self._plain.discard(run.id)
        async with self._db.session() as session:
            session.add(step)
        turn.call_step = step
        wire = step_wire(step)
        self._events.publish(run.id, "thread.run.step.created", wire)
        self._events.publish(run.id, "thread.run.step.in_progress", wire)

    def _on_call_delta(self, run: RunRow, turn: _Turn, delta: Any) -> None:
        assert turn.call_step is not None
        call = turn.calls.get(delta.index)
        fragment: dict[str, Any] = {"index": delta.index, "type": "function"}
        if call is None:
            call = turn.calls[delta.index] = {
                "id": delta.id or new_id("call"),
                "type": "function",
                "function": {"name": "", "arguments": "", "output": None},
            }
            fragment["id"] = call["id"]
        function: dict[str, Any] = {}
        if delta.function is not None:
            if delta.function.name:
                call["function"]["name"] += delta.function.name
                function["name"] = delta.function.name
            if delta.function.arguments:
                call["function"]["arguments"] += delta.function.arguments
                function["arguments"] = delta.function.arguments
        if "id" in fragment:
            function.setdefault("arguments", "")
            function["output"] = None
        fragment["function"] = function
        if self._builtins.handles(run, call["function"]["name"]):
            return  # built-in calls publish their own deltas once they run
        event = RunStepDeltaEvent.model_validate(
            {
                "id": turn.call_step.id,
                "object": "thread.run.step.delta",
                "delta": {"step_details": {"type": "tool_calls", "tool_calls": [fragment]}},
            }
        )
        self._events.publish(run.id, "thread.run.step.delta", event)

    async def _close_message(
        self, turn: _Turn, *, reason: str | None = None, usage: dict[str, int] | None = None
    ) -> None:
        """Completes the turn's message and its step (usage goes on the step; `usage` is
        also added to the run's, in the same write)."""
        assert turn.message is not None and turn.step is not None
        now = self._clock.now()
        run_id = turn.step.run_id
        if run_id in self._plain:
            turn.message.content = _text_content(turn.text)
        else:
            turn.message.content = await self._builtins.message_content(
                run_id, turn.step.id, turn.text
            )
        end_message(turn.message, now, reason)
        turn.step.status = "completed"
        turn.step.completed_at = now
        async with self._db.session() as session:
            if usage:  # the run's row first: every transaction locks a run before its parts
                await _add_usage(session, run_id, usage)
            session.add(turn.message)
            session.add(turn.step)
        event = "thread.message.completed" if reason is None else "thread.message.incomplete"
        self._events.publish(turn.message.run_id or "", event, message_wire(turn.message))
        self._events.publish(turn.step.run_id, "thread.run.step.completed", step_wire(turn.step))

    async def _end_turn(self, run: RunRow, turn: _Turn) -> None:
        """Stores what the turn produced and adds its usage to the run and the last step."""
        last_step = turn.call_step or turn.step
        if last_step is not None:
            last_step.usage = turn.usage
        if turn.call_step is not None:
            calls = [self._builtins.begin(run, turn.calls[i]) for i in sorted(turn.calls)]
            turn.call_step.step_details = {"type": "tool_calls", "tool_calls": calls}
            async with self._db.session() as session:
                if turn.usage:  # the run's row first, as in every transaction
                    await _add_usage(session, run.id, turn.usage)
                session.add(turn.call_step)
        elif turn.message is not None:
            if turn.finish_reason == "length" or run.id not in self._plain:
                reason = "max_tokens" if turn.finish_reason == "length" else None
                await self._close_message(turn, reason=reason, usage=turn.usage)
            # else: the answer of a plain run; `_complete` closes it with the run, in one write
        elif turn.usage:
            async with self._db.session() as session:
                await _add_usage(session, run.id, turn.usage)

    async def _complete(self, run_id: str, turn: _Turn) -> None:
        """Ends the run `completed` after its answering turn.

        A plain run's answer (its only open step and message, still open) is closed in the
        same transaction as the run, which spares the look-up of open parts and three more
        statements per answer. Shielded by the caller: a cancel arriving now must not leave
        the answer's text unwritten.
        """
        if turn.message is None or turn.message.status != "in_progress":
            await self._lifecycle.finish(run_id, "completed")
            return
        assert turn.step is not None
        turn.message.content = _text_content(turn.text)
        await self._lifecycle.finish(
            run_id, "completed", answer=(turn.step, turn.message), usage=turn.usage
        )

    async def _save_partial(self, turn: _Turn) -> None:
        """Keeps text streamed before a failure or cancel, so nothing shown is lost."""
        if turn.message is not None and turn.message.status == "in_progress":
            turn.message.content = _text_content(turn.text)
            async with self._db.session() as session:
                session.add(turn.message)


async def _chunks(
    stream: openai.AsyncStream[ChatCompletionChunk],
) -> AsyncGenerator[ChatCompletionChunk, None]:
    """The provider's chunks. One that does not parse (bad JSON, wrong shape) fails the run
    with a message naming the provider, not as an unexpected error of the engine. The response
    is closed however the turn ends, so a cancelled or failed turn does not hold a pooled
    connection until garbage collection."""
    try:
        while True:
            try:
                chunk = await anext(stream)
            except StopAsyncIteration:
                return
            except ValueError as exc:  # json.JSONDecodeError, pydantic.ValidationError
                raise _BadResponse(f"The model endpoint sent a malformed stream: {exc}") from exc
            yield chunk
    finally:
        await stream.close()


async def _add_usage(session: AsyncSession, run_id: str, usage: dict[str, int]) -> None:
    statement = select(RunRow).where(col(RunRow.id) == run_id).with_for_update()
    row = (await session.exec(statement)).one()
    row.usage = summed_usage(row.usage, usage)
    session.add(row)


def _new_step(run: RunRow, now: int, kind: str, details: Any, *, key: str) -> RunStepRow:
    return RunStepRow(
        id=new_id("step"),
        run_id=run.id,
        thread_id=run.thread_id,
        assistant_id=run.assistant_id,
        created_at=now,
        type=kind,
        status="in_progress",
        step_details={"type": kind, key: details},
        expired_at=None,
    )


def _text_content(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": {"value": text, "annotations": []}}] if text else []


def _required_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": call["id"],
            "type": "function",
            "function": {
                "name": call["function"]["name"],
                "arguments": call["function"]["arguments"],
            },
        }
        for call in calls
    ]


def _chat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = {k: v for k, v in tool["function"].items() if v is not None}
    function.setdefault("parameters", {"type": "object", "properties": {}})
    return {"type": "function", "function": function}


def _chat_tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return choice
    if choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice["function"]["name"]}}
    return {"type": "function", "function": {"name": choice["type"]}}


def _chat_response_format(value: Any) -> dict[str, Any]:
    if value.get("type") != "json_schema":
        return {"type": value["type"]}
    schema = {k: v for k, v in value["json_schema"].items() if v is not None}
    return {"type": "json_schema", "json_schema": schema}


def _provider_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:500]
    return exc.message[:500]


def _error(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}
