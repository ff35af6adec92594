"""The prompt of one model turn: instructions, the (truncated) thread, this run's steps.

Truncation reads the thread newest-first and stops as soon as the budget is spent, so building
the prompt of a run costs the same on a 10-message thread and on a 10,000-message one.
Token counts are a local estimate (no tokenizer download is ever needed).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Text, cast, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import MessageRow, RunRow, RunStepRow

__all__ = ["Prompt", "build_prompt", "estimate_tokens", "message_text"]

_PER_MESSAGE = 4  # role and separators, as chat formats add per message
_FIRST_BATCH = 256  # rows of the first read; the next reads are sized by the budget left
_SPARE_ROWS = 16
_MESSAGE = MessageRow.__table__  # type: ignore[attr-defined]
_STEP = RunStepRow.__table__  # type: ignore[attr-defined]


def estimate_tokens(text: str) -> int:
    """About four characters per token for English text and code; never a download."""
    return len(text) // 4 + 1


_LEAST_COST = estimate_tokens("") + _PER_MESSAGE  # no message is estimated below this

# A thread's messages newest first, as (role, content as JSON text): rows, not ORM objects.
_HISTORY = select(_MESSAGE.c.role, cast(_MESSAGE.c.content, Text)).order_by(
    _MESSAGE.c.thread_id.desc(), _MESSAGE.c.seq.desc()
)
# How `json.dumps` (SQLAlchemy's JSON serializer) writes one text part without annotations,
# the content of most messages, around the JSON string of the text.
_TEXT_HEAD = '[{"type": "text", "text": {"value": "'
_TEXT_TAIL = ', "annotations": []}}]'
_json_value = json.JSONDecoder().raw_decode


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

    One query, newest first on the (thread_id, seq) index, read through a cursor in batches
    sized by the budget left and abandoned at the first message that does not fit: the rows
    read are about the rows kept, however long the thread.
    """
    # The most messages the budget can hold (the first is kept whatever it costs), plus one
    # to see that something was dropped: a bound for the planner, independent of the thread.
    limit = max(budget // _LEAST_COST, 1) + 1
    if last_messages is not None:
        limit = min(limit, last_messages)
    statement = _HISTORY.where(
        # BETWEEN, not =: with = PostgreSQL drops thread_id from the ORDER BY as a constant
        # and may walk the primary key backwards, past every newer message of other threads.
        # Ordered by (thread_id, seq), only the (thread_id, seq) index reads no more than needed.
        _MESSAGE.c.thread_id.between(run.thread_id, run.thread_id),
        or_(_MESSAGE.c.run_id.is_(None), _MESSAGE.c.run_id != run.id),
    ).limit(limit)
    kept: list[dict[str, Any]] = []
    tokens = dropped = 0
    conn = await session.connection()
    result = await conn.stream(statement)
    try:
        size = _FIRST_BATCH
        while not dropped:
            rows = await result.fetchmany(size)
            before = tokens
            for role, content in rows:
                text = _one_text(content)
                if text is not None:  # what _chat_message_of and _estimate make of it
                    message = {"role": role, "content": text}
                    cost = estimate_tokens(text) + _PER_MESSAGE
                else:
                    message = _chat_message_of(role, json.loads(content))
                    cost = _estimate(message)
                if kept and tokens + cost > budget:
                    dropped = 1
                    break
                kept.append(message)
                tokens += cost
            if len(rows) < size:
                break
            # What the rest of the budget holds at the average cost of the rows just read, and
            # some to spare (a short read costs one more fetch; a long one, rows read for naught).
            more = (budget - tokens) * len(rows) // max(tokens - before, 1)
            size = max(more + more // 8, 0) + _SPARE_ROWS
    finally:
        await result.close()
    kept.reverse()
    return kept, tokens, dropped


def _one_text(content: str) -> str | None:
    """The text of JSON content that is exactly one text part without annotations, as the
    engine writes it; None for any other content. Reads one JSON string instead of decoding
    the whole content: a third of the cost of `json.loads`, on most rows of a prompt."""
    if not content.startswith(_TEXT_HEAD):
        return None
    text, end = _json_value(content, len(_TEXT_HEAD) - 1)  # from the string's opening quote
    return text if content[end:] == _TEXT_TAIL else None


async def _run_turns(session: AsyncSession, run: RunRow) -> list[dict[str, Any]]:
    """This run's earlier turns: its messages and its tool calls with their outputs."""
    conn = await session.connection()
    steps = (
        await conn.execute(
            select(_STEP.c.type, _STEP.c.step_details)
            .where(_STEP.c.run_id == run.id)
            .order_by(_STEP.c.seq)
        )
    ).all()
    message_ids = [
        details["message_creation"]["message_id"]
        for kind, details in steps
        if kind == "message_creation"
    ]
    by_id: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    if message_ids:
        rows = await conn.execute(
            select(_MESSAGE.c.id, _MESSAGE.c.role, _MESSAGE.c.content).where(
                _MESSAGE.c.id.in_(message_ids)
            )
        )
        by_id = {id_: (role, content) for id_, role, content in rows}
    turns: list[dict[str, Any]] = []
    for kind, details in steps:
        if kind == "message_creation":
            found = by_id.get(details["message_creation"]["message_id"])
            if found is not None and message_text(found[1]):
                turns.append(_chat_message_of(*found))
            continue
        calls = details.get("tool_calls", [])
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
