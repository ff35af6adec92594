"""Rows -> the `openai` package's own types, so the wire format is exactly the SDK's."""

from __future__ import annotations

from typing import Any

from openai.types.beta import Assistant, Thread
from openai.types.beta.threads import Message, Run
from openai.types.beta.threads.runs import RunStep

from storage import AssistantRow, MessageRow, RunRow, RunStepRow, ThreadRow

__all__ = ["assistant_wire", "message_wire", "run_wire", "step_wire", "thread_wire"]

_TERMINAL_RUN = {"completed", "failed", "cancelled", "expired", "incomplete"}


def assistant_wire(row: AssistantRow) -> Assistant:
    return Assistant.model_validate(
        {
            "id": row.id,
            "object": "assistant",
            "created_at": row.created_at,
            "name": row.name,
            "description": row.description,
            "model": row.model,
            "instructions": row.instructions,
            "tools": row.tools,
            "tool_resources": row.tool_resources or {},
            "metadata": row.meta,
            "temperature": row.temperature if row.temperature is not None else 1.0,
            "top_p": row.top_p if row.top_p is not None else 1.0,
            "response_format": row.response_format or "auto",
        }
    )


def thread_wire(row: ThreadRow) -> Thread:
    return Thread.model_validate(
        {
            "id": row.id,
            "object": "thread",
            "created_at": row.created_at,
            "metadata": row.meta,
            "tool_resources": row.tool_resources or {},
        }
    )


def message_wire(row: MessageRow) -> Message:
    return Message.model_validate(
        {
            "id": row.id,
            "object": "thread.message",
            "created_at": row.created_at,
            "thread_id": row.thread_id,
            "status": row.status,
            "incomplete_details": row.incomplete_details,
            "completed_at": row.completed_at,
            "incomplete_at": row.incomplete_at,
            "role": row.role,
            "content": row.content,
            "assistant_id": row.assistant_id,
            "run_id": row.run_id,
            "attachments": row.attachments or [],
            "metadata": row.meta,
        }
    )


def run_wire(row: RunRow) -> Run:
    return Run.model_validate(
        {
            "id": row.id,
            "object": "thread.run",
            "created_at": row.created_at,
            "thread_id": row.thread_id,
            "assistant_id": row.assistant_id,
            "status": row.status,
            "required_action": row.required_action,
            "last_error": row.last_error,
            # Hosted runs report expires_at only while they can still expire.
            "expires_at": None if row.status in _TERMINAL_RUN else row.expires_at,
            "started_at": row.started_at,
            "cancelled_at": row.cancelled_at,
            "failed_at": row.failed_at,
            "completed_at": row.completed_at,
            "incomplete_details": row.incomplete_details,
            "model": row.model,
            "instructions": row.instructions,
            "tools": row.tools,
            "metadata": row.meta,
            "usage": row.usage,
            "temperature": row.temperature if row.temperature is not None else 1.0,
            "top_p": row.top_p if row.top_p is not None else 1.0,
            "max_prompt_tokens": row.max_prompt_tokens,
            "max_completion_tokens": row.max_completion_tokens,
            "truncation_strategy": row.truncation_strategy
            or {"type": "auto", "last_messages": None},
            "response_format": row.response_format or "auto",
            "tool_choice": row.tool_choice or "auto",
            "parallel_tool_calls": row.parallel_tool_calls,
        }
    )


def step_wire(row: RunStepRow, *, include_search_content: bool = False) -> RunStep:
    details: dict[str, Any] = row.step_details
    if details.get("type") == "tool_calls":
        details = _public_calls(details, include_search_content)
    return RunStep.model_validate(
        {
            "id": row.id,
            "object": "thread.run.step",
            "created_at": row.created_at,
            "run_id": row.run_id,
            "assistant_id": row.assistant_id,
            "thread_id": row.thread_id,
            "type": row.type,
            "status": row.status,
            "cancelled_at": row.cancelled_at,
            "completed_at": row.completed_at,
            "expired_at": row.expired_at,
            "failed_at": row.failed_at,
            "last_error": row.last_error,
            "step_details": details,
            "usage": row.usage,
            "metadata": row.meta,
        }
    )


def _public_calls(details: dict[str, Any], include_search_content: bool) -> dict[str, Any]:
    """Drops the engine's own keys (`_output`, `_markers` ...) and, unless asked for with
    `include[]`, the text of file_search results."""
    calls = []
    for call in details.get("tool_calls", []):
        call = {k: v for k, v in call.items() if not k.startswith("_")}
        search = call.get("file_search")
        if search and search.get("results") and not include_search_content:
            results = [{k: v for k, v in r.items() if k != "content"} for r in search["results"]]
            call["file_search"] = {**search, "results": results}
        calls.append(call)
    return {**details, "tool_calls": calls}
