"""Runs the built-in tools (file_search, code_interpreter) a model turn called.

The runner treats a turn's calls alike while they stream; here the built-in ones become their
hosted step shape, run, publish their step deltas (input, then outputs, as the SDK's
`on_tool_call_delta` expects) and leave `_output` for the model's next turn. Their markers and
files are collected so the final answer's annotations can point at them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from openai.types.beta.threads.runs import RunStepDeltaEvent
from sqlalchemy.orm.attributes import flag_modified
from sqlmodel import col, select

from assistants.annotations import annotate
from assistants.events import EventHub
from assistants.tools import BuiltinTool, ToolContext
from storage import AssistantRow, Database, RunRow, RunStepRow, ThreadRow

__all__ = ["BuiltinCalls"]


class BuiltinCalls:
    def __init__(self, *, db: Database, events: EventHub, tools: Mapping[str, BuiltinTool]) -> None:
        self._db, self._events, self._tools = db, events, tools

    def enabled(self, run: RunRow) -> dict[str, dict[str, Any]]:
        """type -> the run's tool entry, for the built-in tools this engine can run."""
        return {t["type"]: t for t in run.tools if t["type"] in self._tools}

    def schemas(self, run: RunRow) -> list[dict[str, Any]]:
        return [self._tools[kind].schema(entry) for kind, entry in self.enabled(run).items()]

    def handles(self, run: RunRow, name: str) -> bool:
        return name in self.enabled(run)

    def begin(self, run: RunRow, call: dict[str, Any]) -> dict[str, Any]:
        """A streamed function-shaped call -> the tool's step shape, when it is built in."""
        name = call["function"]["name"]
        if call["type"] != "function" or not self.handles(run, name):
            return call
        return self._tools[name].begin(call["id"], call["function"]["arguments"])

    async def run_all(self, run: RunRow, step: RunStepRow) -> None:
        """Runs the step's built-in calls in order, storing outputs after each one."""
        calls: list[dict[str, Any]] = step.step_details["tool_calls"]
        thread, assistant, done = await self._context_rows(run)
        for index, call in enumerate(calls):
            kind = call["type"]
            if kind == "function":
                continue
            ordinal = done.get(kind, 0)
            done[kind] = ordinal + 1
            self._emit(run.id, step.id, index, call["id"], {"type": kind, kind: {}})
            ctx = ToolContext(
                run=run,
                thread=thread,
                assistant=assistant,
                ordinal=ordinal,
                emit=functools.partial(self._emit, run.id, step.id, index, call["id"]),
            )
            await self._tools[kind].call(call, ctx)
            step.step_details = {"type": "tool_calls", "tool_calls": calls}
            # The calls were changed in place: SQLAlchemy would compare the new value with
            # itself and skip the write, so mark the column changed.
            flag_modified(step, "step_details")
            async with self._db.session() as session:
                session.add(step)

    async def message_content(self, run_id: str, step_id: str, text: str) -> list[dict[str, Any]]:
        """The finished message `step_id` of the run: images the run's code produced since its
        previous message, then the text with its citation and file-path annotations."""
        async with self._db.session() as session:
            steps = (
                await session.exec(
                    select(RunStepRow)
                    .where(col(RunStepRow.run_id) == run_id)
                    .order_by(col(RunStepRow.seq))
                )
            ).all()
        calls: list[dict[str, Any]] = []
        images: list[str] = []
        for step in steps:
            if step.type == "message_creation":
                if step.id == step_id:
                    break
                images = []  # shown with an earlier message
                continue
            for call in step.step_details.get("tool_calls", []):
                calls.append(call)
                images += call.get("_images", [])
        parts: list[dict[str, Any]] = [
            {"type": "image_file", "image_file": {"file_id": file_id, "detail": "auto"}}
            for file_id in images
        ]
        if text:
            parts.append(
                {"type": "text", "text": {"value": text, "annotations": annotate(text, calls)}}
            )
        return parts

    async def _context_rows(self, run: RunRow) -> tuple[ThreadRow, AssistantRow, dict[str, int]]:
        async with self._db.session() as session:
            thread = (
                await session.exec(select(ThreadRow).where(col(ThreadRow.id) == run.thread_id))
            ).one()
            assistant = (
                await session.exec(
                    select(AssistantRow).where(col(AssistantRow.id) == run.assistant_id)
                )
            ).first() or AssistantRow(id=run.assistant_id, created_at=0, model=run.model)
            earlier = (
                await session.exec(
                    select(RunStepRow).where(
                        col(RunStepRow.run_id) == run.id,
                        col(RunStepRow.type) == "tool_calls",
                        col(RunStepRow.status) != "in_progress",
                    )
                )
            ).all()
        done: dict[str, int] = {}
        for step in earlier:
            for call in step.step_details.get("tool_calls", []):
                done[call["type"]] = done.get(call["type"], 0) + 1
        return thread, assistant, done

    def _emit(
        self, run_id: str, step_id: str, index: int, call_id: str, fragment: dict[str, Any]
    ) -> None:
        delta = {"index": index, "id": call_id, **_public(fragment)}
        event = RunStepDeltaEvent.model_validate(
            {
                "id": step_id,
                "object": "thread.run.step.delta",
                "delta": {"step_details": {"type": "tool_calls", "tool_calls": [delta]}},
            }
        )
        self._events.publish(run_id, "thread.run.step.delta", event)


def _public(call: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in call.items() if not k.startswith("_")}
