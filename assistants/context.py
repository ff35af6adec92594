"""The prompt of one model turn: instructions, the (truncated) thread, this run's steps.

Truncation reads the thread newest-first and stops as soon as the budget is spent, so building
the prompt of a run costs the same on a 10-message thread and on a 10,000-message one.
Token counts are a local estimate (no tokenizer download is ever needed).
"""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import MessageRow, RunRow, RunStepRow

__all__ = ["Prompt", "build_prompt", "estimate_tokens", "message_text"]

_PAGE = 200
_PER_MESSAGE = 4  # role and separators, as chat formats add per message


def estimate_tokens(text: str) -> int:
    """About four characters per token for English text and code; never a download."""
    return len(text) // 4 + 1


class Prompt:
    """Chat Completions messages plus what was estimated and dropped building them."""

    def __init__(self, messages: list[dict[str, Any]], tokens: int, dropped: int) -> None:
        self.messages, self.tokens, self.dropped = messages, tokens, dropped


async def build_prompt(session: AsyncSession, run: RunRow, *, budget: int) -> Prompt:
    system = [{"role": "system", "content": run.instructions}] if run.instructions else []
    own = await _run_turns(session, run)
    fixed = sum(_estimate(m) for m in system + own)
    strategy = run.truncation_strategy or {"type": "auto"}
    history, tokens, dropped = await _history(
        session, run, strategy.get("last_messages"), max(budget - fixed, 0)
    )
    return Prompt(system + history + own, fixed + tokens, dropped)


async def _history(
    session: AsyncSession, run: RunRow, last_messages: int | None, budget: int
) -> tuple[list[dict[str, Any]], int, int]:
    """Thread messages before this run's own output, newest kept first within the budget.

    Pages by `seq` (keyset, not OFFSET) and reads only the role and content columns: ORM rows
    cost more to build than the prompt itself on long threads.
    """
    statement = (
        select(col(MessageRow.seq), col(MessageRow.role), col(MessageRow.content))
        .where(col(MessageRow.thread_id) == run.thread_id)
        .where((col(MessageRow.run_id).is_(None)) | (col(MessageRow.run_id) != run.id))
        .order_by(col(MessageRow.seq).desc())
    )
    kept: list[dict[str, Any]] = []
    tokens = dropped = 0
    before: int | None = None
    limit = last_messages if last_messages is not None else None
    while True:
        page_size = _PAGE if limit is None else min(_PAGE, limit - len(kept))
        if page_size <= 0:
            break
        page = statement if before is None else statement.where(col(MessageRow.seq) < before)
        rows = (await session.exec(page.limit(page_size))).all()
        for seq, role, content in rows:
            before = seq
            message = _chat_message_of(role, content)
            cost = _estimate(message)
            if kept and tokens + cost > budget:
                dropped += 1
                return list(reversed(kept)), tokens, dropped
            kept.append(message)
            tokens += cost
        if len(rows) < page_size:
            break
    return list(reversed(kept)), tokens, dropped


async def _run_turns(session: AsyncSession, run: RunRow) -> list[dict[str, Any]]:
    """This run's earlier turns: its messages and its tool calls with their outputs."""
    steps = (
        await session.exec(
            select(RunStepRow).where(col(RunStepRow.run_id) == run.id).order_by(col(RunStepRow.seq))
        )
    ).all()
    message_ids = [
        s.step_details["message_creation"]["message_id"]
        for s in steps
        if s.type == "message_creation"
    ]
    by_id: dict[str, MessageRow] = {}
    if message_ids:
        rows = await session.exec(select(MessageRow).where(col(MessageRow.id).in_(message_ids)))
        by_id = {row.id: row for row in rows.all()}
    turns: list[dict[str, Any]] = []
    for step in steps:
        if step.type == "message_creation":
            row = by_id.get(step.step_details["message_creation"]["message_id"])
            if row is not None and message_text(row.content):
                turns.append(_chat_message(row))
            continue
        calls = step.step_details.get("tool_calls", [])
        turns.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [_chat_tool_call(call) for call in calls],
            }
        )
        for call in calls:
            turns.append(
                {"role": "tool", "tool_call_id": call["id"], "content": _tool_output(call)}
            )
    return turns


def _chat_tool_call(call: dict[str, Any]) -> dict[str, Any]:
    kind = call["type"]
    if kind == "function":
        function = call["function"]
        return {
            "id": call["id"],
            "type": "function",
            "function": {"name": function["name"], "arguments": function["arguments"]},
        }
    if kind == "code_interpreter":
        arguments = json.dumps({"code": call["code_interpreter"]["input"]})
    else:
        arguments = json.dumps({"query": call.get("_query", "")})
    function = {"name": kind, "arguments": arguments}
    return {"id": call["id"], "type": "function", "function": function}


def _tool_output(call: dict[str, Any]) -> str:
    kind = call["type"]
    if kind == "function":
        return call["function"].get("output") or ""
    return str(call.get("_output") or "")


def _chat_message(row: MessageRow) -> dict[str, Any]:
    return _chat_message_of(row.role, row.content)


def _chat_message_of(role: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    for part in content:
        if part["type"] == "text":
            parts.append({"type": "text", "text": part["text"]["value"]})
        elif part["type"] == "image_url" and role == "user":
            parts.append({"type": "image_url", "image_url": part["image_url"]})
        elif part["type"] == "image_file":
            parts.append({"type": "text", "text": f"[image file {part['image_file']['file_id']}]"})
    if all(p["type"] == "text" for p in parts):
        return {"role": role, "content": "\n\n".join(p["text"] for p in parts)}
    return {"role": role, "content": parts}


def message_text(content: list[dict[str, Any]]) -> str:
    return "\n\n".join(p["text"]["value"] for p in content if p["type"] == "text")


def _estimate(message: dict[str, Any]) -> int:
    content = message.get("content")
    if isinstance(content, list):
        text = " ".join(p.get("text", "") for p in content) + " [image]" * len(content)
    else:
        text = content or ""
    if message.get("tool_calls"):
        text += json.dumps(message["tool_calls"])
    return estimate_tokens(text) + _PER_MESSAGE
