"""The run driver: follows a run's events into a Slack reply and answers its function calls.

Text deltas stream into the `SlackReply`; `requires_action` is resolved against the function
registry (with the Slack context of the conversation) and the outputs go back through the
engine's service API, whose next stream is followed the same way. The run's end decides how the
reply ends: the final Markdown (citations as footnotes, a sources block), or a short notice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from assistants import Citation, Engine, RunArtifacts, StreamEvent, SubmitToolOutputs
from bot.functions import FunctionContext, FunctionRegistry
from bot.rendering import Source, render_citations, sources_block
from bot.slack_reply import SlackReply
from bot.slack_uploads import upload_outputs

__all__ = ["FEEDBACK_ACTION", "RunDriver", "RunOutcome"]

log = logging.getLogger("bot.driver")

FEEDBACK_ACTION = "answer_feedback"

_ENDINGS = {
    "thread.run.completed": "completed",
    "thread.run.failed": "failed",
    "thread.run.incomplete": "incomplete",
    "thread.run.cancelled": "cancelled",
    "thread.run.expired": "expired",
}


@dataclass
class RunOutcome:
    run_id: str | None = None
    status: str = "unknown"
    text: str = ""
    error: str | None = None
    message_ts: list[str] = field(default_factory=list)
    #: Whether the run called tools (only then can it have sources, code or files to show).
    used_tools: bool = False


class RunDriver:
    def __init__(self, *, engine: Engine, functions: FunctionRegistry) -> None:
        self._engine, self._functions = engine, functions

    async def drive(
        self,
        thread_id: str,
        events: AsyncIterator[StreamEvent],
        reply: SlackReply,
        ctx: FunctionContext,
        *,
        on_run: Callable[[str], None] = lambda _run_id: None,
    ) -> RunOutcome:
        outcome = RunOutcome()
        parts: list[tuple[str, list[dict[str, Any]]]] = []
        stream: AsyncIterator[StreamEvent] | None = events
        while stream is not None:
            next_stream = None
            async for event in stream:
                data: Any = event.data
                if event.event == "thread.run.created":
                    outcome.run_id = data.id
                    on_run(data.id)
                elif event.event == "thread.message.delta":
                    for part in data.delta.content or []:
                        if part.type == "text" and part.text and part.text.value:
                            reply.append(part.text.value)
                elif event.event == "thread.message.completed":
                    parts.extend(_text_parts(data))
                elif event.event == "thread.run.step.created" and data.type == "tool_calls":
                    outcome.used_tools = True
                elif event.event == "thread.run.requires_action":
                    await reply.set_status("is working on it…")
                    next_stream = await self._answer_calls(thread_id, data, ctx)
                elif event.event in _ENDINGS:
                    outcome.status = _ENDINGS[event.event]
                    if data.last_error is not None:
                        outcome.error = data.last_error.message
                    if data.incomplete_details is not None:
                        outcome.error = data.incomplete_details.reason
            stream = next_stream
        await self._finish(thread_id, reply, outcome, parts)
        outcome.message_ts = reply.message_ts
        return outcome

    async def _answer_calls(
        self, thread_id: str, run: Any, ctx: FunctionContext
    ) -> AsyncIterator[StreamEvent]:
        calls = run.required_action.submit_tool_outputs.tool_calls
        outputs = await asyncio.gather(
            *(self._functions.call(c.function.name, c.function.arguments, ctx) for c in calls)
        )
        params = SubmitToolOutputs.model_validate(
            {
                "tool_outputs": [
                    {"tool_call_id": c.id, "output": output}
                    for c, output in zip(calls, outputs, strict=True)
                ]
            }
        )
        return await self._engine.runs.submit_tool_outputs_stream(thread_id, run.id, params)

    async def _finish(
        self,
        thread_id: str,
        reply: SlackReply,
        outcome: RunOutcome,
        parts: list[tuple[str, list[dict[str, Any]]]],
    ) -> None:
        artifacts = RunArtifacts()
        links: dict[str, str] = {}
        if outcome.run_id is not None and outcome.used_tools:
            artifacts = await self._engine.runs.artifacts(thread_id, outcome.run_id)
            links = await upload_outputs(
                reply.client,
                self._engine,
                channel=reply.channel,
                thread_ts=reply.thread_ts,
                artifacts=artifacts,
            )
        text, sources = _final_markdown(parts, artifacts.citations, links)
        outcome.text = text
        if outcome.status == "completed":
            blocks = [sources_block(sources)] if sources else []
            blocks.append(_feedback_block())
            await reply.finish(text, blocks)
        elif outcome.status == "incomplete":
            await reply.finish(f"{text}\n\n_(The answer was cut short: {outcome.error}.)_")
        elif outcome.status == "cancelled":
            await reply.fail("_(Stopped.)_")
        elif outcome.status == "expired":
            await reply.fail("_(This took too long and was stopped. Please try again.)_")
        else:
            log.warning("run %s ended %s: %s", outcome.run_id, outcome.status, outcome.error)
            cause = "the model service failed"
            if (outcome.error or "").startswith("The server"):  # a replica stopped mid-answer
                cause = "the server working on it stopped"
            await reply.fail(
                f":warning: Sorry, I couldn't finish that answer because {cause}. "
                "Please try again in a moment."
            )


def _text_parts(message: Any) -> list[tuple[str, list[dict[str, Any]]]]:
    found = []
    for part in message.content:
        if part.type == "text":
            annotations = [a.model_dump(mode="json") for a in part.text.annotations]
            found.append((part.text.value, annotations))
    return found


def _final_markdown(
    parts: list[tuple[str, list[dict[str, Any]]]],
    citations: list[Citation],
    links: dict[str, str],
) -> tuple[str, list[Source]]:
    """All of the run's messages as one answer: citation markers become footnotes with their
    sources (file, page, quote), sandbox links point at the files uploaded to Slack."""
    text = "\n\n".join(value for value, _ in parts)
    annotations: list[dict[str, Any]] = []
    offset = 0
    for value, part_annotations in parts:
        for annotation in part_annotations:
            shifted = dict(annotation)
            shifted["start_index"] = annotation["start_index"] + offset
            shifted["end_index"] = annotation["end_index"] + offset
            annotations.append(shifted)
        offset += len(value) + 2
    filenames = {c.file_id: c.filename for c in citations}
    quotes = {c.marker: c.quote for c in citations}
    pages = {c.file_id: c.page for c in reversed(citations) if c.page is not None}
    rendered, sources = render_citations(text, annotations, filenames, quotes, links=links)
    return rendered, [replace(s, page=pages.get(s.file_id, s.page)) for s in sources]


def _feedback_block() -> dict[str, Any]:
    return {
        "type": "context_actions",
        "elements": [
            {
                "type": "feedback_buttons",
                "action_id": FEEDBACK_ACTION,
                "positive_button": {
                    "text": {"type": "plain_text", "text": "👍"},
                    "value": "good",
                    "accessibility_label": "This answer was helpful",
                },
                "negative_button": {
                    "text": {"type": "plain_text", "text": "👎"},
                    "value": "bad",
                    "accessibility_label": "This answer was not helpful",
                },
            }
        ],
    }
