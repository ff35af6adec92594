"""Seed flows through the official async SDK over real HTTP: create/poll, stream, create-and-run.

Each test drives the REST API exactly as a user's script would and checks what hosted
Assistants v2 did (FACTS.md §1): statuses, the stream's event order, message ownership.
"""

from __future__ import annotations

import json

import openai
from openai import AsyncAssistantEventHandler
from openai.types.beta import AssistantStreamEvent
from openai.types.beta.threads import Text, TextDelta, TextDeltaBlock

from tests.fakes.model_server import ModelFake, text_reply


def hosted_text_run_events(deltas: int) -> list[str]:
    """The hosted order of a text-only run (openai-php fixture, FACTS.md §1), `done` excluded:
    the SDK consumes `done` itself and never hands it to a handler."""
    return [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.step.created",
        "thread.run.step.in_progress",
        "thread.message.created",
        "thread.message.in_progress",
        *["thread.message.delta"] * deltas,
        "thread.message.completed",
        "thread.run.step.completed",
        "thread.run.completed",
    ]


class RecordingHandler(AsyncAssistantEventHandler):
    """Records every event name and the text callbacks, in the order the SDK fires them."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []
        self.calls: list[str] = []
        self.deltas: list[str] = []
        self.events: list[AssistantStreamEvent] = []

    async def on_event(self, event: AssistantStreamEvent) -> None:
        self.names.append(event.event)
        # A copy: the SDK accumulates later deltas into the `message.created` object in place.
        self.events.append(event.model_copy(deep=True))

    async def on_text_created(self, text: Text) -> None:
        self.calls.append("text_created")

    async def on_text_delta(self, delta: TextDelta, snapshot: Text) -> None:
        self.calls.append("text_delta")
        self.deltas.append(delta.value or "")

    async def on_text_done(self, text: Text) -> None:
        self.calls.append("text_done")


async def _assistant(client: openai.AsyncOpenAI, instructions: str = "Be brief.") -> str:
    assistant = await client.beta.assistants.create(model="fake-model", instructions=instructions)
    return assistant.id


async def test_create_then_retrieve_polling_until_completed(
    client: openai.AsyncOpenAI, model: ModelFake
) -> None:
    assistant_id = await _assistant(client)
    thread = await client.beta.threads.create()
    await client.beta.threads.messages.create(thread.id, role="user", content="What is 2+2?")
    model.script(text_reply("It is 4."))

    run = await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant_id)
    assert run.status == "queued"
    assert run.thread_id == thread.id and run.assistant_id == assistant_id
    assert run.expires_at == run.created_at + 600
    # `runs.poll` is the SDK's retrieve loop (GET .../runs/{id} until a terminal status).
    done = await client.beta.threads.runs.poll(run.id, thread_id=thread.id)
    assert done.status == "completed"
    assert done.started_at is not None and done.completed_at is not None
    assert done.expires_at is None  # hosted: null once the run can no longer expire
    assert done.last_error is None
    # A plain retrieve agrees with the poll helper's last answer.
    again = await client.beta.threads.runs.retrieve(run.id, thread_id=thread.id)
    assert again.status == "completed"

    messages = await client.beta.threads.messages.list(thread.id)
    assert [m.role for m in messages.data] == ["assistant", "user"]  # newest first
    reply = messages.data[0]
    assert reply.assistant_id == assistant_id and reply.run_id == run.id
    assert reply.status == "completed"
    assert reply.content[0].type == "text" and reply.content[0].text.value == "It is 4."
    user = messages.data[1]
    assert user.run_id is None and user.assistant_id is None
    assert model.pending == 0


async def test_create_and_poll(client: openai.AsyncOpenAI, model: ModelFake) -> None:
    assistant_id = await _assistant(client, "Answer in one word.")
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "Hi"}])
    model.script(text_reply("Hello"))

    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant_id
    )

    assert run.status == "completed"
    listed = await client.beta.threads.messages.list(thread.id, run_id=run.id)
    assert [m.content[0].text.value for m in listed.data] == ["Hello"]  # type: ignore[union-attr]
    request = model.requests[0]
    assert request["messages"] == [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Hi"},
    ]
    assert request["stream"] is True


async def test_stream_with_event_handler_delivers_text_in_hosted_order(
    client: openai.AsyncOpenAI, model: ModelFake
) -> None:
    assistant_id = await _assistant(client)
    thread = await client.beta.threads.create()
    await client.beta.threads.messages.create(thread.id, role="user", content="Tell me")
    scripted = "Streaming works, piece by piece."
    model.script(text_reply(scripted, chunk_size=5))

    handler = RecordingHandler()
    async with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant_id, event_handler=handler
    ) as stream:
        await stream.until_done()
        final_run = await stream.get_final_run()
        final_messages = await stream.get_final_messages()

    # Text callbacks: created once, then every delta in order, then done.
    assert handler.calls[0] == "text_created"
    assert handler.calls[-1] == "text_done"
    assert set(handler.calls[1:-1]) == {"text_delta"}
    pieces = len(range(0, len(scripted), 5))  # one delta per streamed model chunk
    assert len(handler.deltas) == pieces
    assert "".join(handler.deltas) == scripted

    # The full event order equals the hosted recording.
    assert handler.names == hosted_text_run_events(pieces)
    events = handler.events
    created = events[0]
    assert created.event == "thread.run.created" and created.data.status == "queued"
    in_progress = events[2]
    assert in_progress.event == "thread.run.in_progress"
    assert in_progress.data.started_at is not None
    message_created = events[5]
    assert message_created.event == "thread.message.created"
    assert message_created.data.content == [] and message_created.data.status == "in_progress"
    parts = [
        part
        for e in events
        if e.event == "thread.message.delta"
        for part in e.data.delta.content or []
    ]
    assert len(parts) == pieces
    assert all(isinstance(p, TextDeltaBlock) and p.text is not None for p in parts)
    # Only the first delta carries `annotations: []`.
    annotations = [p.text.annotations for p in parts if isinstance(p, TextDeltaBlock) and p.text]
    assert annotations == [[], *[None] * (pieces - 1)]
    step_completed = events[-2]
    assert step_completed.event == "thread.run.step.completed"
    assert step_completed.data.usage is not None
    completed = events[-1]
    assert completed.event == "thread.run.completed"
    assert completed.data.usage is not None and completed.data.expires_at is None

    assert final_run.status == "completed"
    assert final_messages[0].content[0].text.value == scripted  # type: ignore[union-attr]
    stored = await client.beta.threads.messages.list(thread.id)
    assert stored.data[0].content[0].text.value == scripted  # type: ignore[union-attr]
    assert stored.data[0].run_id == final_run.id


async def test_stream_ends_with_done_sentinel_on_the_wire(
    client: openai.AsyncOpenAI, model: ModelFake
) -> None:
    """The raw SSE body (read through the SDK's streaming response) ends `event: done` /
    `data: [DONE]`, which the SDK's stream handler relies on to stop."""
    assistant_id = await _assistant(client)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    model.script(text_reply("ok"))

    async with client.beta.threads.runs.with_streaming_response.create(
        thread_id=thread.id, assistant_id=assistant_id, stream=True
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in response.iter_lines()]

    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    data = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    assert events[-2:] == ["thread.run.completed", "done"]
    assert data[-1] == "[DONE]"
    assert json.loads(data[0])["status"] == "queued"


async def test_create_and_run_poll(client: openai.AsyncOpenAI, model: ModelFake) -> None:
    assistant_id = await _assistant(client)
    model.script(text_reply("Created and run."))

    run = await client.beta.threads.create_and_run_poll(
        assistant_id=assistant_id,
        thread={"messages": [{"role": "user", "content": "Go"}]},
    )

    assert run.status == "completed"
    thread = await client.beta.threads.retrieve(run.thread_id)
    messages = await client.beta.threads.messages.list(thread.id)
    assert [m.role for m in messages.data] == ["assistant", "user"]
    assert messages.data[0].run_id == run.id and messages.data[0].assistant_id == assistant_id
    assert messages.data[0].content[0].text.value == "Created and run."  # type: ignore[union-attr]
    assert model.requests[0]["messages"][-1] == {"role": "user", "content": "Go"}


async def test_create_and_run_stream_starts_with_thread_created(
    client: openai.AsyncOpenAI, model: ModelFake
) -> None:
    assistant_id = await _assistant(client)
    model.script(text_reply("From a brand new thread."))

    handler = RecordingHandler()
    async with client.beta.threads.create_and_run_stream(
        assistant_id=assistant_id,
        thread={"messages": [{"role": "user", "content": "Start"}]},
        event_handler=handler,
    ) as stream:
        await stream.until_done()
        final_run = await stream.get_final_run()

    assert handler.names[0] == "thread.created"
    assert handler.names[1:] == hosted_text_run_events(len(handler.deltas))
    thread_event = handler.events[0]
    assert thread_event.event == "thread.created"
    assert thread_event.data.id == final_run.thread_id
    assert "".join(handler.deltas) == "From a brand new thread."
    assert final_run.status == "completed"
    messages = await client.beta.threads.messages.list(final_run.thread_id)
    assert [m.role for m in messages.data] == ["assistant", "user"]
