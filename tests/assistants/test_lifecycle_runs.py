"""Run lifecycle through the SDK: cancel, expiry, incomplete, truncation, provider failures,
the thread lock and usage accounting — each checked against hosted Assistants v2 behaviour."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from openai import AsyncAssistantEventHandler
from openai.types.beta import AssistantStreamEvent
from openai.types.beta.threads import Run, Text, TextDelta

from assistants import Engine, ManualClock
from tests.fakes.model_server import (
    ModelFake,
    Reply,
    ToolCall,
    error_reply,
    hang_reply,
    length_reply,
    malformed_reply,
    text_reply,
    tool_calls_reply,
)

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
    }
]


async def _thread_with_question(
    client: openai.AsyncOpenAI, *, tools: list[Any] | None = None
) -> tuple[str, str]:
    assistant = await client.beta.assistants.create(
        model="fake-model", instructions="Be brief.", tools=tools or []
    )
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "Question?"}])
    return assistant.id, thread.id


async def _assert_thread_usable(
    client: openai.AsyncOpenAI, model: ModelFake, assistant_id: str, thread_id: str
) -> None:
    """The thread is unlocked: a message can be added and a new run completes."""
    await client.beta.threads.messages.create(thread_id, role="user", content="Still there?")
    model.script(text_reply("Yes."))
    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id
    )
    assert run.status == "completed"
    latest = await client.beta.threads.messages.list(thread_id, limit=1)
    assert latest.data[0].content[0].text.value == "Yes."  # type: ignore[union-attr]


# -- cancel ----------------------------------------------------------------------------------


async def test_cancel_in_progress_run(client: openai.AsyncOpenAI, model: ModelFake) -> None:
    assistant_id, thread_id = await _thread_with_question(client)
    model.script(hang_reply())
    run = await client.beta.threads.runs.create(thread_id=thread_id, assistant_id=assistant_id)
    await model.next_request()  # the model call is in flight: the run really is working
    working = await client.beta.threads.runs.retrieve(run.id, thread_id=thread_id)
    assert working.status == "in_progress"

    cancelling = await client.beta.threads.runs.cancel(run.id, thread_id=thread_id)
    assert cancelling.status == "cancelling"

    cancelled = await client.beta.threads.runs.poll(run.id, thread_id=thread_id)
    assert cancelled.status == "cancelled"
    assert cancelled.cancelled_at is not None
    assert cancelled.expires_at is None
    assert cancelled.completed_at is None and cancelled.failed_at is None
    with pytest.raises(openai.BadRequestError) as again:
        await client.beta.threads.runs.cancel(run.id, thread_id=thread_id)
    assert again.value.body["message"] == "Cannot cancel run with status 'cancelled'."  # type: ignore[index]
    await _assert_thread_usable(client, model, assistant_id, thread_id)


class CancelOnFirstDelta(AsyncAssistantEventHandler):
    """Cancels the run from inside the stream as soon as text starts arriving."""

    def __init__(self, client: openai.AsyncOpenAI) -> None:
        super().__init__()
        self.client = client
        self.names: list[str] = []
        self.text = ""

    async def on_event(self, event: AssistantStreamEvent) -> None:
        self.names.append(event.event)

    async def on_text_delta(self, delta: TextDelta, snapshot: Text) -> None:
        first = not self.text
        self.text += delta.value or ""
        run = self.current_run
        if first and run is not None:
            await self.client.beta.threads.runs.cancel(run.id, thread_id=run.thread_id)


async def test_cancel_while_streaming_ends_the_stream_cancelled(
    client: openai.AsyncOpenAI, model: ModelFake
) -> None:
    assistant_id, thread_id = await _thread_with_question(client)
    model.token_interval = 0.05  # 40 slow chunks: the cancel lands mid-stream
    model.script(text_reply("word " * 40, chunk_size=5))

    handler = CancelOnFirstDelta(client)
    async with client.beta.threads.runs.stream(
        thread_id=thread_id, assistant_id=assistant_id, event_handler=handler
    ) as stream:
        await stream.until_done()
        final = await stream.get_final_run()

    assert final.status == "cancelled"
    tail = [n for n in handler.names if n != "thread.message.delta"][-4:]
    assert tail == [
        "thread.run.cancelling",
        "thread.message.incomplete",
        "thread.run.step.cancelled",
        "thread.run.cancelled",
    ]
    messages = await client.beta.threads.messages.list(thread_id, run_id=final.id)
    partial = messages.data[0]
    assert partial.status == "incomplete"
    assert partial.incomplete_details is not None
    assert partial.incomplete_details.reason == "run_cancelled"
    kept = partial.content[0].text.value  # type: ignore[union-attr]
    assert kept and ("word " * 40).startswith(kept)  # what was streamed is kept, nothing more
    model.token_interval = 0.0
    await _assert_thread_usable(client, model, assistant_id, thread_id)


async def test_concurrent_cancels_only_one_is_accepted(
    client: openai.AsyncOpenAI, model: ModelFake
) -> None:
    """Regression: every concurrent cancel used to read `in_progress` and be accepted."""
    assistant_id, thread_id = await _thread_with_question(client)
    model.script(hang_reply())
    run = await client.beta.threads.runs.create(thread_id=thread_id, assistant_id=assistant_id)
    await model.next_request()

    results = await asyncio.gather(
        *(client.beta.threads.runs.cancel(run.id, thread_id=thread_id) for _ in range(3)),
        return_exceptions=True,
    )

    accepted = [r for r in results if isinstance(r, Run)]
    rejected = [r for r in results if isinstance(r, openai.BadRequestError)]
    assert len(accepted) == 1 and len(rejected) == 2, results
    assert accepted[0].status == "cancelling"
    for error in rejected:
        assert error.body["message"] in {  # type: ignore[index]
            "Cannot cancel run with status 'cancelling'.",
            "Cannot cancel run with status 'cancelled'.",
        }
    final = await client.beta.threads.runs.poll(run.id, thread_id=thread_id)
    assert final.status == "cancelled"


class CancelAt(AsyncAssistantEventHandler):
    """Sends a cancel when `event_name` arrives, i.e. while the run is finishing."""

    def __init__(self, client: openai.AsyncOpenAI, event_name: str) -> None:
        super().__init__()
        self.client, self.event_name = client, event_name
        self.answer: Run | openai.BadRequestError | None = None

    async def on_event(self, event: AssistantStreamEvent) -> None:
        run = self.current_run
        if event.event != self.event_name or self.answer is not None or run is None:
            return
        try:
            self.answer = await self.client.beta.threads.runs.cancel(
                run.id, thread_id=run.thread_id
            )
        except openai.BadRequestError as exc:
            self.answer = exc


@pytest.mark.parametrize("event_name", ["thread.message.completed", "thread.run.step.completed"])
async def test_cancel_racing_completion_never_rewrites_a_finished_run(
    client: openai.AsyncOpenAI, model: ModelFake, event_name: str
) -> None:
    """Regression: a cancel that read `in_progress` just before the run completed overwrote
    `completed` with `cancelling` then `cancelled` (the run had both timestamps). Now the cancel
    either wins (the run ends cancelled or, attempted too late, completed) or is refused with the
    status the run really ended in."""
    assistant = await client.beta.assistants.create(model="fake-model")
    for _attempt in range(3):
        thread = await client.beta.threads.create(messages=[{"role": "user", "content": "q"}])
        model.script(text_reply("done"))
        handler = CancelAt(client, event_name)
        async with client.beta.threads.runs.stream(
            thread_id=thread.id, assistant_id=assistant.id, event_handler=handler
        ) as stream:
            await stream.until_done()
        run = handler.current_run
        assert run is not None
        final = await client.beta.threads.runs.poll(run.id, thread_id=thread.id)

        assert final.status in {"cancelled", "completed"}
        assert not (final.completed_at and final.cancelled_at), final
        if isinstance(handler.answer, openai.BadRequestError):
            assert final.status == "completed"
            assert handler.answer.body["message"] == (  # type: ignore[index]
                "Cannot cancel run with status 'completed'."
            )
        else:
            assert handler.answer is not None and handler.answer.status == "cancelling"
        messages = await client.beta.threads.messages.list(thread.id, run_id=run.id)
        expected = {"completed"} if final.status == "completed" else {"completed", "incomplete"}
        assert all(m.status in expected for m in messages.data)


# -- expiry ----------------------------------------------------------------------------------


async def test_requires_action_past_expires_at_expires(
    client: openai.AsyncOpenAI, model: ModelFake, clock: ManualClock
) -> None:
    assistant_id, thread_id = await _thread_with_question(client, tools=TOOLS)
    call = ToolCall("lookup", "{}")
    model.script(tool_calls_reply(call))
    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id
    )
    assert run.status == "requires_action"
    assert run.expires_at == run.created_at + 600

    clock.advance(599)
    still = await client.beta.threads.runs.retrieve(run.id, thread_id=thread_id)
    assert still.status == "requires_action" and still.expires_at == run.created_at + 600
    clock.advance(2)  # 601 s after creation
    expired = await client.beta.threads.runs.retrieve(run.id, thread_id=thread_id)

    assert expired.status == "expired"
    assert expired.expires_at is None
    assert expired.required_action is None
    steps = await client.beta.threads.runs.steps.list(run.id, thread_id=thread_id)
    assert [(s.type, s.status) for s in steps.data] == [("tool_calls", "expired")]
    assert steps.data[0].expired_at is not None
    with pytest.raises(openai.BadRequestError) as late:
        await client.beta.threads.runs.submit_tool_outputs(
            run.id,
            thread_id=thread_id,
            tool_outputs=[{"tool_call_id": str(call.id), "output": "x"}],
        )
    assert late.value.body["message"] == 'Runs in status "expired" do not accept tool outputs.'  # type: ignore[index]
    await _assert_thread_usable(client, model, assistant_id, thread_id)


async def test_expiry_sweep_and_working_run_overrunning_expires_at(
    client: openai.AsyncOpenAI, model: ModelFake, clock: ManualClock, engine: Engine
) -> None:
    """A run stuck on a hung model call also expires; the sweeper finds it without a read."""
    assistant_id, thread_id = await _thread_with_question(client)
    model.script(hang_reply())
    run = await client.beta.threads.runs.create(thread_id=thread_id, assistant_id=assistant_id)
    await model.next_request()

    clock.advance(601)
    assert await engine.runs.expire_due() == 1

    listed = await client.beta.threads.runs.list(thread_id)
    assert [(r.id, r.status, r.expires_at) for r in listed.data] == [(run.id, "expired", None)]
    assert await engine.runs.expire_due() == 0
    await _assert_thread_usable(client, model, assistant_id, thread_id)


# -- incomplete and truncation ---------------------------------------------------------------


async def test_max_completion_tokens_makes_run_incomplete(
    client: openai.AsyncOpenAI, model: ModelFake
) -> None:
    assistant_id, thread_id = await _thread_with_question(client)
    model.script(length_reply("This answer was cut"))

    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id, max_completion_tokens=256
    )

    assert run.status == "incomplete"
    assert run.incomplete_details is not None
    assert run.incomplete_details.reason == "max_completion_tokens"
    assert run.max_completion_tokens == 256
    assert run.expires_at is None
    assert (await model.next_request())["max_completion_tokens"] == 256
    reply = (await client.beta.threads.messages.list(thread_id, run_id=run.id)).data[0]
    assert reply.status == "incomplete"
    assert reply.incomplete_details is not None and reply.incomplete_details.reason == "max_tokens"
    assert reply.content[0].text.value == "This answer was cut"  # type: ignore[union-attr]
    await _assert_thread_usable(client, model, assistant_id, thread_id)


async def test_truncation_last_messages_sends_only_the_last_two(
    client: openai.AsyncOpenAI, model: ModelFake
) -> None:
    assistant = await client.beta.assistants.create(model="fake-model", instructions="System!")
    thread = await client.beta.threads.create()
    for number in range(1, 6):
        await client.beta.threads.messages.create(
            thread.id, role="user" if number % 2 else "assistant", content=f"m{number}"
        )
    model.script(text_reply("ok"))

    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        truncation_strategy={"type": "last_messages", "last_messages": 2},
    )

    assert run.status == "completed"
    assert run.truncation_strategy is not None
    assert run.truncation_strategy.type == "last_messages"
    assert run.truncation_strategy.last_messages == 2
    assert model.requests[0]["messages"] == [
        {"role": "system", "content": "System!"},
        {"role": "assistant", "content": "m4"},
        {"role": "user", "content": "m5"},
    ]


# -- provider failures -----------------------------------------------------------------------

#: Retry-After keeps the engine's SDK retries (max_retries=2) fast without changing their logic.
_FAST = 0.01


async def test_provider_500_once_then_success_completes(
    client: openai.AsyncOpenAI, model: ModelFake
) -> None:
    assistant_id, thread_id = await _thread_with_question(client)
    model.script(error_reply(500, "transient", retry_after=_FAST), text_reply("Recovered."))

    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id
    )

    assert run.status == "completed" and run.last_error is None
    assert len(model.requests) == 2
    reply = (await client.beta.threads.messages.list(thread_id, limit=1)).data[0]
    assert reply.content[0].text.value == "Recovered."  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("status", "code", "provider_text"),
    [
        (500, "server_error", "The model server is on fire."),
        (429, "rate_limit_exceeded", "Rate limit reached for requests."),
    ],
)
async def test_provider_always_failing_fails_the_run(
    client: openai.AsyncOpenAI, model: ModelFake, status: int, code: str, provider_text: str
) -> None:
    assistant_id, thread_id = await _thread_with_question(client)

    def always_fail(_request: dict[str, Any]) -> Reply:
        return error_reply(status, provider_text, retry_after=_FAST)

    model.set_default(always_fail)

    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id
    )

    assert run.status == "failed"
    assert run.failed_at is not None and run.expires_at is None
    assert run.last_error is not None
    assert run.last_error.code == code
    assert provider_text in run.last_error.message
    assert len(model.requests) == 3  # the first try and the client's two retries
    messages = await client.beta.threads.messages.list(thread_id)
    assert [m.role for m in messages.data] == ["user"]  # nothing half-written was left behind
    model.set_default(lambda _request: text_reply("unused"))
    await _assert_thread_usable(client, model, assistant_id, thread_id)


async def test_malformed_model_stream_fails_cleanly_and_thread_recovers(
    client: openai.AsyncOpenAI, model: ModelFake
) -> None:
    assistant_id, thread_id = await _thread_with_question(client)
    model.script(malformed_reply("Half an ans"))

    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id
    )

    assert run.status == "failed"
    assert run.last_error is not None and run.last_error.code == "server_error"
    # The message blames the provider's stream, not a generic internal error.
    assert run.last_error.message.startswith("The model endpoint sent a malformed stream")
    steps = await client.beta.threads.runs.steps.list(run.id, thread_id=thread_id)
    assert [(s.type, s.status) for s in steps.data] == [("message_creation", "failed")]
    partial = (await client.beta.threads.messages.list(thread_id, run_id=run.id)).data[0]
    assert partial.status == "incomplete"
    assert partial.incomplete_details is not None
    assert partial.incomplete_details.reason == "run_failed"
    await _assert_thread_usable(client, model, assistant_id, thread_id)


# -- thread lock -----------------------------------------------------------------------------


async def test_thread_lock_while_a_run_is_active(
    client: openai.AsyncOpenAI, model: ModelFake
) -> None:
    assistant_id, thread_id = await _thread_with_question(client)
    model.script(hang_reply())
    run = await client.beta.threads.runs.create(thread_id=thread_id, assistant_id=assistant_id)
    await model.next_request()

    with pytest.raises(openai.BadRequestError) as add_message:
        await client.beta.threads.messages.create(thread_id, role="user", content="more")
    assert add_message.value.status_code == 400
    assert add_message.value.body == {
        "message": f"Can't add messages to {thread_id} while a run {run.id} is active.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }

    with pytest.raises(openai.BadRequestError) as second_run:
        await client.beta.threads.runs.create(thread_id=thread_id, assistant_id=assistant_id)
    assert second_run.value.status_code == 400
    assert second_run.value.body == {
        "message": f"Thread {thread_id} already has an active run {run.id}.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    with pytest.raises(openai.BadRequestError) as stream_run:
        async with client.beta.threads.runs.stream(
            thread_id=thread_id, assistant_id=assistant_id
        ) as stream:
            await stream.until_done()
    assert stream_run.value.body["message"] == (  # type: ignore[index]
        f"Thread {thread_id} already has an active run {run.id}."
    )

    # Other threads are not affected.
    other = await client.beta.threads.create()
    await client.beta.threads.messages.create(other.id, role="user", content="independent")

    await client.beta.threads.runs.cancel(run.id, thread_id=thread_id)
    assert (await client.beta.threads.runs.poll(run.id, thread_id=thread_id)).status == "cancelled"
    await _assert_thread_usable(client, model, assistant_id, thread_id)


async def test_thread_lock_while_requires_action(
    client: openai.AsyncOpenAI, model: ModelFake
) -> None:
    assistant_id, thread_id = await _thread_with_question(client, tools=TOOLS)
    model.script(tool_calls_reply(ToolCall("lookup", "{}")))
    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id
    )
    assert run.status == "requires_action"

    with pytest.raises(openai.BadRequestError) as caught:
        await client.beta.threads.messages.create(thread_id, role="user", content="more")
    assert caught.value.body["message"] == (  # type: ignore[index]
        f"Can't add messages to {thread_id} while a run {run.id} is active."
    )
    cancelling = await client.beta.threads.runs.cancel(run.id, thread_id=thread_id)
    assert cancelling.status == "cancelling"
    cancelled = await client.beta.threads.runs.poll(run.id, thread_id=thread_id)
    assert cancelled.status == "cancelled" and cancelled.cancelled_at is not None
    await _assert_thread_usable(client, model, assistant_id, thread_id)


# -- usage -----------------------------------------------------------------------------------


async def test_usage_on_run_and_final_step_equals_model_report(
    client: openai.AsyncOpenAI, model: ModelFake
) -> None:
    assistant_id, thread_id = await _thread_with_question(client)
    model.script(text_reply("Counted.", prompt_tokens=123, completion_tokens=45))

    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id
    )

    expected = {"prompt_tokens": 123, "completion_tokens": 45, "total_tokens": 168}
    assert run.usage is not None and run.usage.model_dump() == expected
    assert (await model.next_request())["stream_options"] == {"include_usage": True}
    steps = await client.beta.threads.runs.steps.list(run.id, thread_id=thread_id)
    final_step = steps.data[0]  # newest first
    assert final_step.type == "message_creation"
    assert final_step.usage is not None and final_step.usage.model_dump() == expected
