"""Built-in tools the engine runs itself (the model sees them as function tools).

A tool turns the model's call into the run step's tool call (`begin`), then does the work
(`call`), filling the step's outputs and `_output`: the text the model reads next turn.
Keys starting with `_` are the engine's own and never reach the wire.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from storage import AssistantRow, RunRow, ThreadRow

__all__ = ["BuiltinTool", "ToolContext"]


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
