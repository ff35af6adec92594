"""Built-in tools the engine runs itself (the model sees them as function tools).

A tool turns the model's call into the run step's tool call (`begin`), then does the work
(`call`), filling the step's outputs and `_output`: the text the model reads next turn.
Keys starting with `_` are the engine's own and never reach the wire.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlmodel import col, select

from storage import AssistantRow, Database, MessageRow, RunRow, ThreadRow

__all__ = ["BuiltinTool", "ToolContext", "attached_files", "one_argument", "one_argument_schema"]


@dataclass
class ToolContext:
    run: RunRow
    thread: ThreadRow
    assistant: AssistantRow
    #: How many calls of this tool the run made before this one (citation markers use it).
    ordinal: int
    #: Publishes a `thread.run.step.delta` fragment for this call (index and id added).
    emit: Callable[[dict[str, Any]], None]


class BuiltinTool(Protocol):
    type: str

    def schema(self, config: dict[str, Any]) -> dict[str, Any]:
        """The Chat Completions function tool the model sees, from the run's tool entry."""
        ...

    def begin(self, call_id: str, arguments: str) -> dict[str, Any]:
        """The run step's tool call for the model's arguments, outputs still empty."""
        ...

    async def call(self, call: dict[str, Any], ctx: ToolContext) -> None:
        """Does the work; fills the call's outputs and `_output`. Never raises for the
        model's mistakes: those become an output the model can read and correct."""
        ...


def one_argument_schema(name: str, description: str, argument: str, about: str) -> dict[str, Any]:
    """The function tool a built-in shows the model: one required string argument."""
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {argument: {"type": "string", "description": about}},
                "required": [argument],
            },
        },
    }


def one_argument(arguments: str, argument: str) -> str:
    """The argument's value; models that send the bare value instead of JSON are understood."""
    try:
        return str(json.loads(arguments or "{}").get(argument, ""))
    except (ValueError, AttributeError):
        return arguments


async def attached_files(db: Database, thread_id: str, tool: str) -> list[str]:
    """Ids of files attached to the thread's messages for `tool`, in order, once each."""
    async with db.session() as session:
        messages = (
            await session.exec(
                select(MessageRow)
                .where(col(MessageRow.thread_id) == thread_id)
                .where(col(MessageRow.attachments).is_not(None))
                .order_by(col(MessageRow.seq))
            )
        ).all()
    found = [
        attachment["file_id"]
        for message in messages
        for attachment in message.attachments or []
        if any(t.get("type") == tool for t in attachment.get("tools", []))
    ]
    return list(dict.fromkeys(found))
