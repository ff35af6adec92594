"""Function calling through the SDK: requires_action, submitting outputs (poll and stream),
what the model sees on the next turn, the run steps, and the errors for bad submissions."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai import AsyncAssistantEventHandler
from openai.types.beta import AssistantStreamEvent
from openai.types.beta.threads import Run, Text, TextDelta

from assistants import Engine
from tests.fakes.model_server import ModelFake, ToolCall, text_reply, tool_calls_reply

WEATHER_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {
                "type": "object",
                "properties": {"tz": {"type": "string"}},
            },
        },
    },
]


def _two_calls() -> tuple[ToolCall, ToolCall]:
    return (
        ToolCall("get_weather", json.dumps({"city": "Paris"})),
        ToolCall("get_time", json.dumps({"tz": "Europe/Paris"})),
    )


async def _setup(client: openai.AsyncOpenAI) -> tuple[str, str]:
    assistant = await client.beta.assistants.create(
        model="fake-model", instructions="Use the tools.", tools=WEATHER_TOOLS
    )
    thread = await client.beta.threads.create()
    await client.beta.threads.messages.create(
        thread.id, role="user", content="Weather and time in Paris?"
    )
    return assistant.id, thread.id


def _assert_required(run: Run, calls: tuple[ToolCall, ...]) -> None:
    assert run.status == "requires_action"
    assert run.required_action is not None
    assert run.required_action.type == "submit_tool_outputs"
    required = run.required_action.submit_tool_outputs.tool_calls
    assert [(c.id, c.type, c.function.name, c.function.arguments) for c in required] == [
        (call.id, "function", call.name, call.arguments) for call in calls
    ]


def _outputs(calls: tuple[ToolCall, ...]) -> list[Any]:
    return [{"tool_call_id": call.id, "output": f"result of {call.name}"} for call in calls]


def _assert_second_request(request: dict[str, Any], calls: tuple[ToolCall, ...]) -> None:
    """The follow-up turn replays the assistant's tool calls and one tool result per call."""
    messages = request["messages"]
    assert messages[0] == {"role": "system", "content": "Use the tools."}
    assert messages[1] == {"role": "user", "content": "Weather and time in Paris?"}
    assistant_turn = messages[2]
    assert assistant_turn["role"] == "assistant"
    assert [
        (c["id"], c["type"], c["function"]["name"], c["function"]["arguments"])
        for c in assistant_turn["tool_calls"]
    ] == [(call.id, "function", call.name, call.arguments) for call in calls]
    assert messages[3:] == [
        {"role": "tool", "tool_call_id": call.id, "content": f"result of {call.name}"}
        for call in calls
    ]
    tools = {tool["function"]["name"] for tool in request["tools"]}
    assert tools == {"get_weather", "get_time"}


async def test_parallel_calls_then_submit_and_poll(
    client: openai.AsyncOpenAI, model: ModelFake
) -> None:
    assistant_id, thread_id = await _setup(client)
    calls = _two_calls()
    model.script(
        tool_calls_reply(*calls),
        text_reply("Sunny, 14:00.", prompt_tokens=50, completion_tokens=5),
    )

    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id
    )
    _assert_required(run, calls)
    assert run.expires_at == run.created_at + 600
    first_request = await model.next_request()
    assert first_request["parallel_tool_calls"] is True

    done = await client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread_id, tool_outputs=_outputs(calls)
    )

    assert done.status == "completed"
    assert done.required_action is None
    _assert_second_request(await model.next_request(), calls)

    steps = await client.beta.threads.runs.steps.list(run.id, thread_id=thread_id, order="asc")
    assert [s.type for s in steps.data] == ["tool_calls", "message_creation"]
    assert [s.status for s in steps.data] == ["completed", "completed"]
    tool_step = steps.data[0].step_details
    assert tool_step.type == "tool_calls"
    assert [
        (c.id, c.function.name, c.function.arguments, c.function.output)  # type: ignore[union-attr]
        for c in tool_step.tool_calls
    ] == [(call.id, call.name, call.arguments, f"result of {call.name}") for call in calls]
    message_step = steps.data[1].step_details
    assert message_step.type == "message_creation"
    messages = await client.beta.threads.messages.list(thread_id)
    assert messages.data[0].id == message_step.message_creation.message_id
    assert messages.data[0].content[0].text.value == "Sunny, 14:00."  # type: ignore[union-attr]
    assert messages.data[0].run_id == run.id
    # Usage: the final step carries its own turn, the run the sum of both turns.
    assert steps.data[1].usage is not None
    assert steps.data[1].usage.model_dump() == {
        "prompt_tokens": 50,
        "completion_tokens": 5,
        "total_tokens": 55,
    }
    first_usage = steps.data[0].usage
    assert first_usage is not None and done.usage is not None
    assert done.usage.prompt_tokens == first_usage.prompt_tokens + 50
    assert done.usage.completion_tokens == first_usage.completion_tokens + 5
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens


class ToolStreamHandler(AsyncAssistantEventHandler):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []
        self.text = ""

    async def on_event(self, event: AssistantStreamEvent) -> None:
        self.names.append(event.event)

    async def on_text_delta(self, delta: TextDelta, snapshot: Text) -> None:
        self.text += delta.value or ""


async def test_streaming_requires_action_then_submit_tool_outputs_stream(
    client: openai.AsyncOpenAI, model: ModelFake
) -> None:
    assistant_id, thread_id = await _setup(client)
    calls = _two_calls()
    model.script(tool_calls_reply(*calls), text_reply("Both done."))

    first = ToolStreamHandler()
    async with client.beta.threads.runs.stream(
        thread_id=thread_id, assistant_id=assistant_id, event_handler=first
    ) as stream:
        await stream.until_done()
        paused = await stream.get_final_run()
        tool_calls_seen = [
            (c.id, c.function.name, c.function.arguments)  # type: ignore[union-attr]
            for step in await stream.get_final_run_steps()
            for c in step.step_details.tool_calls  # type: ignore[union-attr]
        ]

    _assert_required(paused, calls)
    assert first.names[:5] == [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.step.created",
        "thread.run.step.in_progress",
    ]
    assert first.names[-1] == "thread.run.requires_action"
    assert set(first.names[5:-1]) == {"thread.run.step.delta"}
    # The step deltas accumulated in the SDK rebuild both calls exactly.
    assert tool_calls_seen == [(c.id, c.name, c.arguments) for c in calls]

    second = ToolStreamHandler()
    async with client.beta.threads.runs.submit_tool_outputs_stream(
        thread_id=thread_id, run_id=paused.id, tool_outputs=_outputs(calls), event_handler=second
    ) as stream:
        await stream.until_done()
        final = await stream.get_final_run()

    assert final.status == "completed"
    assert second.text == "Both done."
    assert second.names[:3] == [
        "thread.run.step.completed",  # the tool_calls step, outputs filled in
        "thread.run.queued",
        "thread.run.in_progress",
    ]
    assert second.names[-1] == "thread.run.completed"
    await model.next_request()
    _assert_second_request(await model.next_request(), calls)
    retrieved = await client.beta.threads.runs.retrieve(paused.id, thread_id=thread_id)
    assert retrieved.status == "completed"


class SubmitInsideHandler(AsyncAssistantEventHandler):
    """OpenAI's cookbook pattern: submit outputs from inside the requires_action event, while
    the first stream is still open, and stream the continuation from there."""

    def __init__(self, client: openai.AsyncOpenAI, calls: tuple[ToolCall, ...]) -> None:
        super().__init__()
        self.client, self.calls = client, calls
        self.continuation: list[str] = []
        self.final: Run | None = None

    async def on_event(self, event: AssistantStreamEvent) -> None:
        if event.event != "thread.run.requires_action":
            return
        run = event.data
        async with self.client.beta.threads.runs.submit_tool_outputs_stream(
            thread_id=run.thread_id,
            run_id=run.id,
            tool_outputs=_outputs(self.calls),
            event_handler=ToolStreamHandler(),
        ) as stream:
            async for text in stream.text_deltas:
                self.continuation.append(text)
            self.final = await stream.get_final_run()


async def test_submit_tool_outputs_stream_inside_requires_action_handler(
    client: openai.AsyncOpenAI, model: ModelFake
) -> None:
    assistant_id, thread_id = await _setup(client)
    calls = _two_calls()
    model.script(tool_calls_reply(*calls), text_reply("Cookbook style."))

    handler = SubmitInsideHandler(client, calls)
    async with client.beta.threads.runs.stream(
        thread_id=thread_id, assistant_id=assistant_id, event_handler=handler
    ) as stream:
        await stream.until_done()

    assert handler.final is not None and handler.final.status == "completed"
    assert "".join(handler.continuation) == "Cookbook style."


async def test_wrong_tool_call_ids_are_rejected(
    client: openai.AsyncOpenAI, model: ModelFake
) -> None:
    assistant_id, thread_id = await _setup(client)
    calls = _two_calls()
    model.script(tool_calls_reply(*calls), text_reply("fine"))
    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id
    )
    assert run.status == "requires_action"

    wrong = [{"tool_call_id": "call_nope", "output": "x"}, _outputs(calls)[1]]
    with pytest.raises(openai.BadRequestError) as bad_ids:
        await client.beta.threads.runs.submit_tool_outputs(
            run.id, thread_id=thread_id, tool_outputs=wrong
        )
    assert bad_ids.value.status_code == 400
    assert bad_ids.value.type == "invalid_request_error"
    message = bad_ids.value.body["message"]  # type: ignore[index]
    assert "call_nope" in message and str(calls[0].id) in message
    assert message.startswith("Expected tool outputs for call_ids")

    with pytest.raises(openai.BadRequestError) as missing_one:
        await client.beta.threads.runs.submit_tool_outputs(
            run.id, thread_id=thread_id, tool_outputs=_outputs(calls)[:1]
        )
    assert str(calls[1].id) in missing_one.value.body["message"]  # type: ignore[index]

    # Nothing was consumed: the run still waits, and correct outputs still complete it.
    waiting = await client.beta.threads.runs.retrieve(run.id, thread_id=thread_id)
    assert waiting.status == "requires_action"
    done = await client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread_id, tool_outputs=_outputs(calls)
    )
    assert done.status == "completed"


async def test_outputs_for_a_completed_run_are_rejected(
    client: openai.AsyncOpenAI, model: ModelFake, engine: Engine
) -> None:
    assistant_id, thread_id = await _setup(client)
    model.script(text_reply("No tools needed."))
    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id
    )
    assert run.status == "completed"

    with pytest.raises(openai.BadRequestError) as caught:
        await client.beta.threads.runs.submit_tool_outputs(
            run.id, thread_id=thread_id, tool_outputs=[{"tool_call_id": "call_x", "output": "1"}]
        )
    with pytest.raises(openai.BadRequestError) as caught_stream:
        async with client.beta.threads.runs.submit_tool_outputs_stream(
            thread_id=thread_id,
            run_id=run.id,
            tool_outputs=[{"tool_call_id": "call_x", "output": "1"}],
        ) as stream:
            await stream.until_done()

    assert caught.value.status_code == 400
    assert caught.value.body == {
        "message": 'Runs in status "completed" do not accept tool outputs.',
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert caught_stream.value.body == caught.value.body
    # Regression: a rejected streaming submit used to leave an event log behind forever.
    assert len(engine.events) == 0
